package bridge

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestIPTablesBinariesFollowTheThread: whether the legacy backend is used
// is decided in the namespace the commands run in, the calling thread's,
// not the thread group leader's (/proc/net): tests moved the leader into
// endpoints' namespaces, and the legacy rules were then never removed.
func TestIPTablesBinariesFollowTheThread(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		t.Skip("no iptables-legacy")
	}
	has := func(bins []string) bool {
		for _, b := range bins {
			if strings.HasSuffix(b, "iptables-legacy") {
				return true
			}
		}
		return false
	}
	// A thread in a namespace of its own, whose legacy filter table is not
	// loaded: no legacy, whatever the leader's namespace holds.
	done := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			done <- false
			return
		}
		done <- has(iptablesBinaries())
	}()
	if <-done {
		t.Error("a thread in a fresh network namespace would use iptables-legacy")
	}
	names, _ := os.ReadFile("/proc/thread-self/net/ip_tables_names")
	if strings.Contains(string(names), "filter") && !has(iptablesBinaries()) {
		t.Error("the legacy filter table is loaded here, but iptables-legacy is not used")
	}
}
