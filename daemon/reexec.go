package daemon

import (
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/ocicli"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
	"github.com/shoal-project/shoal/manager/heartbeat"

	// The init, the shim and `runtime run` start from these packages' init
	// functions, before the packages they do not need are initialized.
	_ "github.com/shoal-project/shoal/containerd/ocicli/runmain"
	_ "github.com/shoal-project/shoal/containerd/runtime/initmain"
	_ "github.com/shoal-project/shoal/containerd/shim/shimmain"
)

// Reexec runs the entry points that are not client commands: the container
// init that the runtime re-executes this binary as (`shoal init`, hidden), the
// per-container shim (`shoal shim`, hidden), the supervisor of an exec'd
// process (`shoal exec-shim`, hidden), a manager's heartbeat answering
// process (`shoal heartbeat-server`, hidden) and
// the OCI runtime command line (`shoal runtime ...`). main calls it first, before
// building the CLI, because the init is on every container's start path and
// must not pay for cobra's set-up. It returns false when args name none of
// them; otherwise it does not return.
func Reexec(args []string) bool {
	if len(args) < 2 {
		return false
	}
	switch args[1] {
	case "init":
		runtime.InitMain()
	case "runtime":
		ocicli.Main(args[2:])
	case "shim":
		shim.Main(args[2:])
	case containers.ExecShimArg:
		containers.ExecShimMain(args[2:])
	case containers.InitArg:
		containers.InitMain(args[2:])
	case heartbeat.ServerArg:
		heartbeat.Main()
	}
	return false
}
