package runtime

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/shoal-project/shoal/containerd/inroot"
)

// TestRootMountChecksTheInit: RootMount enters a container's mount
// namespace through its recorded pid only while that pid is still the
// recorded process (its start time): a pid that another process took
// after the container's exit must never be entered.
func TestRootMountChecksTheInit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	_, start, ok := procStat(cmd.Process.Pid)
	if !ok {
		t.Fatal("no stat of the child")
	}
	r := New(t.TempDir())
	for _, tc := range []struct {
		id    string
		start uint64
		ok    bool
	}{{"same", start, true}, {"reused", start + 1, false}} {
		if err := os.MkdirAll(r.dir(tc.id), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := r.save(&containerState{ID: tc.id, Pid: cmd.Process.Pid, StartTime: tc.start}); err != nil {
			t.Fatal(err)
		}
		f, err := r.RootMount(tc.id)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.id, err)
		case !tc.ok && !errors.Is(err, ErrState):
			t.Errorf("%s: RootMount = %v, want ErrState", tc.id, err)
		}
		if f != nil {
			// The child shares this process's namespace: the copy is of
			// the host's root mount.
			if _, err := os.Stat(inroot.FdPath(int(f.Fd()), "etc/passwd")); err != nil {
				t.Errorf("%s: the root mount's copy: %v", tc.id, err)
			}
			f.Close()
		}
	}
}
