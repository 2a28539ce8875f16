package tests

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestStartRolesSkipTheRestOfTheBinary: the container init and the shim,
// executed at every container start, run from an init function before the
// packages they do not import are initialized (containerd/runtime/initmain,
// containerd/shim/shimmain). An import that sorts late in either role's
// dependencies (cobra, cilium/ebpf...) would silently bring back the whole
// binary's initialization, so the built binary's init trace is checked.
func TestStartRolesSkipTheRestOfTheBinary(t *testing.T) {
	bin := harness.Binary(t)
	for _, c := range []struct {
		role string
		// packages the role must not initialize
		not []string
	}{
		{"init", []string{"github.com/distribution/reference", "google.golang.org/grpc", "github.com/spf13/cobra", "github.com/shoal-project/shoal/api"}},
		{"shim", []string{"google.golang.org/grpc", "github.com/spf13/cobra", "github.com/shoal-project/shoal/api"}},
	} {
		// No configuration (init) or flags (shim): the role starts, reports
		// the error and exits, after its packages' initialization.
		cmd := exec.Command(bin, c.role)
		cmd.Env = []string{"GODEBUG=inittrace=1"}
		out, _ := cmd.CombinedOutput()
		inited := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "init" {
				inited[f[1]] = true
			}
		}
		if !inited["github.com/shoal-project/shoal/containerd/runtime"] {
			t.Fatalf("%s: no init trace of package runtime (did the role start?):\n%s", c.role, out)
		}
		for _, p := range c.not {
			if inited[p] {
				t.Errorf("%s initializes %s: something it imports holds its dispatch back (%d packages initialized)", c.role, p, len(inited))
			}
		}
	}
}
