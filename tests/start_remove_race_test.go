package tests

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestStartRemoveRaceThroughDaemon starts and force-removes bridge-network
// containers at once through the daemon, many times: every call returns
// (no deadlock between the engine's per-container lock and the daemon's
// network lock) and nothing of any container is left (process, cgroup,
// mount, file, veth).
func TestStartRemoveRaceThroughDaemon(t *testing.T) {
	d := engine(t)
	for i := 0; i < 15; i++ {
		id := strings.TrimSpace(d.Must("create", "busybox", "sleep", "1000"))
		var wg sync.WaitGroup
		var start, rm harness.Result
		wg.Add(2)
		go func() { defer wg.Done(); start = d.Run("start", id) }()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%5) * 5 * time.Millisecond)
			rm = d.Run("rm", "-f", id)
		}()
		wg.Wait()
		if rm.Code != 0 {
			t.Fatalf("round %d: rm -f: %s (start: %s)", i, rm, start)
		}
		if start.Code != 0 && !strings.Contains(start.Stderr, "No such container") {
			t.Errorf("round %d: start: %s", i, start)
		}
		assertNoTrace(t, d, id)
		if t.Failed() {
			t.Fatalf("round %d: start: %s; rm: %s", i, start, rm)
		}
	}
}
