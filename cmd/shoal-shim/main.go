// Command shoal-shim is the per-container shim (`shoal-shim shim ...`) and
// the container init (`shoal-shim init`) in a binary of their own, a tenth
// of shoal's size. Every container start executes both, and a Go program's
// start costs in proportion to its binary (page faults, the runtime's type
// and function tables, package initialization): measured here, the shim
// starts in 7 ms instead of 31 and the init in 6 instead of 15. `make
// build` builds it first and embeds it in shoal (containerd/shimbin), so
// that shoal stays one file to install; the daemon and `shoal runtime`
// execute it from a sealed copy. A shoal built without it (plain `go
// build ./cmd/shoal`) runs both roles itself.
package main

import (
	"fmt"
	"os"

	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			runtime.InitMain()
		case "shim":
			shim.Main(os.Args[2:])
			return
		}
	}
	fmt.Fprintln(os.Stderr, "shoal-shim: the shim and container init of shoal, started by `shoal daemon` and `shoal runtime`; not a command to run by hand")
	os.Exit(2)
}
