// Package shimmain runs the shim (`shoal shim`, see package shim) from its
// init function, before the packages of the binary that the shim does not
// import are initialized, as package initmain does for the container init
// (its doc says how and why). The shim needs net, whose vendored
// dependencies sort last, so it starts later than the init does, yet before
// gRPC, protobuf and the image reference parser. The binary imports it for
// this effect; when the first argument is "shim" it never returns.
package shimmain

import (
	"os"

	"github.com/shoal-project/shoal/containerd/shim"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "shim" {
		shim.Main(os.Args[2:])
	}
}
