// Command shoal is the node daemon (`shoal daemon`) and its docker-compatible
// client (every other subcommand) in one binary.
package main

import (
	"os"

	"github.com/shoal-project/shoal/cli"
	"github.com/shoal-project/shoal/daemon"
)

func main() {
	// The container init, the shim and the OCI runtime CLI come first: they
	// are on the container start path and must not pay for the CLI's set-up.
	if daemon.Reexec(os.Args) {
		return
	}
	root := cli.NewRootCommand()
	root.AddCommand(daemon.Command())
	os.Exit(cli.Execute(root))
}
