// Command shoal is the node daemon (`shoal daemon`) and its docker-compatible
// client (every other subcommand) in one binary.
package main

import (
	"os"

	"github.com/shoal-project/shoal/cli"
	"github.com/shoal-project/shoal/daemon"
)

func main() {
	if daemon.Reexec(os.Args) {
		return
	}
	root := cli.NewRootCommand()
	os.Exit(cli.Execute(root))
}
