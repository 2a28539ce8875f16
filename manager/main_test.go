package manager

import (
	"os"
	"testing"

	"github.com/shoal-project/shoal/manager/heartbeat"
)

// TestMain lets this test binary be a manager's heartbeat answering process
// (heartbeat.ServerArg), as the daemon's binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == heartbeat.ServerArg {
		heartbeat.Main()
	}
	os.Exit(m.Run())
}
