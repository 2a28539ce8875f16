// Command shoal is the node daemon (`shoal daemon`) and its docker-compatible
// client (every other subcommand) in one file.
//
// `make build` makes that file of two programs. The engine (the daemon and
// the roles it re-executes itself as) is this package built as it is
// (engine.go). The client is this package built with the tag shoalclient
// (client.go): the CLI and the OCI runtime command line, with the engine
// embedded, which `shoal daemon` executes from a sealed copy. Why two: a Go
// program's start costs in proportion to what it links (package
// initialization, the runtime's tables, page faults), and every `shoal
// run` starts the client: built with the engine it takes about 30 ms of CPU
// to start, without it 18. A plain `go build ./cmd/shoal` is the engine
// alone, which also runs every client command, as before.
package main

import (
	"os"

	"github.com/shoal-project/shoal/cli"
)

func main() {
	// The container init, the shim and the OCI runtime CLI come first: they
	// are on the container start path and must not pay for the CLI's set-up.
	if reexec(os.Args) {
		return
	}
	clientRuntime()
	root := cli.NewRootCommand()
	root.AddCommand(daemonCommand())
	os.Exit(cli.Execute(root))
}
