// Command shoal is the node daemon (`shoal daemon`) and its docker-compatible
// client (every other subcommand) in one binary.
package main

import (
	"os"

	"github.com/shoal-project/shoal/cli"
)

func main() {
	root := cli.NewRootCommand()
	os.Exit(cli.Execute(root))
}
