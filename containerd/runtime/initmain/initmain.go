// Package initmain runs the container init (`shoal init`, see package
// runtime) from its init function, so that the init, which every container
// start executes, does not pay for the initialization of the rest of the
// binary (gRPC, protobuf, the raft store, image references and their
// regular expressions, the API types...), which a Go program cannot skip
// otherwise. The binary imports it for this effect (the daemon package
// does); when the first argument is "init" it never returns.
//
// Go initializes packages in dependency order and, among those ready, in
// the order of their import paths (the language specification, "Package
// initialization", since Go 1.21). This package's init therefore runs as
// soon as package runtime and its imports are initialized, and it is safe
// by construction: everything the init uses is imported from here, so it is
// initialized first. How early that is depends on what runtime imports: a
// dependency whose path sorts late (text/..., vendor/... through net) holds
// it back until most of the program is initialized; cilium/ebpf was one
// (through go/printer and text/tabwriter), which is why package cgroups
// loads its device programs with bpf(2) itself. tests/startpath_test.go
// checks on the built binary that the init initializes neither gRPC nor
// the image reference parser.
package initmain

import (
	"os"

	"github.com/shoal-project/shoal/containerd/runtime"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.InitMain()
	}
}
