//go:build !shoalclient

package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/daemon"
)

// reexec runs the engine's roles: the daemon's re-executions of itself and
// the runtime's (see daemon.Reexec).
func reexec(args []string) bool {
	if len(args) > 1 && args[1] == "daemon" {
		// Only the daemon is executed from the client's descriptor; the
		// roles (an exec helper per exec, the init) need no name fixed.
		nameProcess()
	}
	return daemon.Reexec(args)
}

func daemonCommand() *cobra.Command { return daemon.Command() }

// nameProcess gives the process the name "shoal" when it was executed from
// a descriptor (the client's sealed copy of the engine, /proc/self/fd/N),
// which the kernel names after the descriptor's number: ps and top would
// show the daemon as "3".
func nameProcess() {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return
	}
	for _, c := range comm[:len(comm)-1] {
		if c < '0' || c > '9' {
			return
		}
	}
	// Every thread's: the runtime's later threads are clones of these and
	// inherit the name (top -H and perf show threads).
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		_ = os.WriteFile("/proc/self/task/"+t.Name()+"/comm", []byte("shoal"), 0)
	}
}

// clientRuntime leaves the runtime as it is: the engine serves the client
// commands only when built alone (plain go build ./cmd/shoal), and its
// roles each decide (the daemon in daemon.Run).
func clientRuntime() {}
