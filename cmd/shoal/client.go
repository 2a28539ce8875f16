//go:build shoalclient

package main

import (
	_ "embed"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/containerd/ocicli"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"

	// One processor and the heap mapped ahead, before the other packages
	// initialize.
	_ "github.com/shoal-project/shoal/cmd/shoal/clientinit"

	// `shoal runtime run`, the init and the shim start from these
	// packages' init functions, before cobra and the client's packages.
	_ "github.com/shoal-project/shoal/containerd/ocicli/runmain"
	_ "github.com/shoal-project/shoal/containerd/runtime/initmain"
	_ "github.com/shoal-project/shoal/containerd/shim/shimmain"
)

// engine is the engine's binary (this package built without the tag), which
// `make build` writes to bin/ before it builds the client.
//
//go:embed bin/shoal-engine
var engine string

// reexec runs the roles that need none of the engine: the OCI runtime
// command line, and the container init and the shim that it and the
// daemon execute (from the embedded shim binary, package shimbin; these
// cases serve a client built without it).
func reexec(args []string) bool {
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
	}
	return false
}

// daemonCommand stands for the engine's `daemon` command in the client's
// command list; the engine parses its flags (and answers --help).
func daemonCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "daemon [OPTIONS]",
		Short:              "Run the shoal node daemon",
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE:               func(*cobra.Command, []string) error { return execEngine(os.Args) },
	}
}

// execEngine replaces this process with the embedded engine, run from a
// sealed memfd copy: nothing on disk to keep in step with the client, and
// nothing anyone can write (the daemon executes itself again, as an exec
// helper for instance, through the same copy: runtime.SealedSelf).
func execEngine(args []string) error {
	f, err := runtime.SealedCopy("shoal", strings.NewReader(engine))
	if err != nil {
		return fmt.Errorf("start the engine: %w", err)
	}
	// The engine starts with the slack the client was started with (its
	// main thread's, which slowMonitor leaves alone), not with that of
	// whichever thread runs this: one the monitor started has the monitor's.
	goruntime.LockOSThread()
	_ = runtime.ThreadSlackFromMain()
	// execve resolves the path before it closes the close-on-exec descriptor.
	err = syscall.Exec(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), args, os.Environ())
	return fmt.Errorf("start the engine: %w", err)
}

// clientRuntime fits the Go runtime to a client command once it is known
// to be one: the monitor thread's timer slack coarsened
// (runtime.SlowMonitor). Package clientinit gave it one processor.
func clientRuntime() {
	_, _ = runtime.SlowMonitor()
}
