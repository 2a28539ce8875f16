package runtime

import (
	"os/exec"
	"testing"
	"time"
)

// AwaitExit returns when the child exits, not before, and leaves it for
// Wait to reap with its status.
func TestAwaitExit(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 0.3; exit 7")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { AwaitExit(cmd.Process.Pid); close(done) }()
	select {
	case <-done:
		t.Fatalf("returned after %v, while the child runs", time.Since(start))
	case <-time.After(150 * time.Millisecond):
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("did not return after the child's exit")
	}
	err := cmd.Wait()
	if code := exitCode(cmd.ProcessState, err); code != 7 {
		t.Fatalf("exit status %d (%v), want 7: the child was reaped by AwaitExit", code, err)
	}
	// A child that has already exited: at once.
	cmd = exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	AwaitExit(cmd.Process.Pid) // reaped already: no pidfd, returns
	cmd = exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a zombie now
	AwaitExit(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
