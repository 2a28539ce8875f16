package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// buildEscape builds the in-container attacker (testdata/escape) into a new
// directory that the test bind-mounts into the victim container, with a
// writable out/ beside it for the attacker's report.
func buildEscape(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", "escape"), "./testdata/escape")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build attacker: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hostMarker makes a file that exists only on the host; the attacker looks
// for it through other processes' root directories.
func hostMarker(t *testing.T) string {
	t.Helper()
	p := fmt.Sprintf("/tmp/shoal-escape-marker-%d", os.Getpid())
	if err := os.WriteFile(p, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return p
}

func report(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "out", "report"))
	return string(b)
}

// TestExecHelperOutOfReach: a container's root process attaches with ptrace
// to every new process it sees while `exec` runs in it, and reads their
// threads' root directories. Before the fix the exec helper was born in the
// container's pid namespace, its thread dropped capabilities before execve
// while its other Go threads kept the host's root and full capabilities, and
// it was dumpable: the attacker attached to it (exe = shoal binary).
func TestExecHelperOutOfReach(t *testing.T) {
	d := engine(t)
	dir := buildEscape(t)
	marker := hostMarker(t)
	d.Must("run", "-d", "--name", "victim", "-e", "ESCAPE_MARKER="+marker, "-v", dir+"/bin:/x:ro", "-v", dir+"/out:/out",
		"busybox", "/x/escape", "ptrace", "/out/report", "45")
	waitFor(t, "attacker ready", func() bool { return strings.Contains(report(dir), "READY") })
	for i := 0; i < 25; i++ {
		// The exec'd process lives a moment, so the attacker can show it
		// attaches to a container process once it is one (that is allowed).
		// An attach in flight can break the exec itself: its result is
		// not what this test judges.
		if r := d.Run("exec", "victim", "sleep", "0.05"); r.Code != 0 {
			t.Logf("exec %d: %s", i, r)
		}
	}
	logs := d.Run("logs", "victim")
	t.Logf("state: %s", d.Run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}} {{.State.Error}}", "victim"))
	d.Must("rm", "-f", "victim")
	r := report(dir)
	t.Logf("attacker's logs: %s\nreport:\n%s", logs, r)
	attachedTarget := false
	for _, line := range strings.Split(r, "\n") {
		switch {
		case strings.HasPrefix(line, "ESCAPE"):
			t.Errorf("the container read a host root: %s", line)
		case strings.HasPrefix(line, "ATTACHED"):
			if strings.HasSuffix(line, "exe=/bin/busybox") {
				attachedTarget = true
			} else {
				t.Errorf("the container attached to a runtime process in flight: %s", line)
			}
		}
	}
	if !attachedTarget {
		t.Errorf("the attacker never attached to an exec'd container process, so it proves nothing:\n%s", r)
	}
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// exePath is the file that /proc/PID/exe names.
func exePath(pid int) string {
	l, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return l
}

// TestBinaryNotWritableFromContainer is CVE-2019-5736's pattern: a command
// exec'd in the container is a script "#!/proc/self/exe", so the process
// runs whatever binary exec'd it; the container's root process opens its
// /proc/PID/exe and writes to it as soon as no process runs that file any
// more. Before the fix that file was the host's shoal binary, and the write
// went through once the daemon and shims were gone.
func TestBinaryNotWritableFromContainer(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "shoal")
	src, err := os.ReadFile(harness.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	before := sha(t, bin)
	d := harness.StartDaemon(t, harness.Options{Bin: bin})
	d.Must("import", harness.BusyboxTar(t), "busybox:latest")
	dir := buildEscape(t)
	if err := os.WriteFile(filepath.Join(dir, "bin", "evil"), []byte("#!/proc/self/exe\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.Must("run", "-d", "--name", "victim", "-v", dir+"/bin:/x:ro", "-v", dir+"/out:/out",
		"busybox", "/x/escape", "exe", "/out/report", "30")
	waitFor(t, "attacker ready", func() bool { return strings.Contains(report(dir), "READY") })
	for i := 0; i < 50 && !strings.Contains(report(dir), "GOT"); i++ {
		d.Run("exec", "victim", "/x/evil") // fails: the binary does not know the command
	}
	if !strings.Contains(report(dir), "GOT") {
		t.Fatalf("the attacker never got hold of the binary that ran its script:\n%s", report(dir))
	}
	// Nothing may run the binary's file any more: the daemon, then every
	// process (shims) that runs it.
	d.Kill9()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(p), "%d", &pid); err == nil && exePath(pid) == bin {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(report(dir), "WROTE") {
		time.Sleep(50 * time.Millisecond)
	}
	r := report(dir)
	after := sha(t, bin)
	if strings.Contains(r, "WROTE") || !bytes.Equal(before[:], after[:]) {
		t.Errorf("the container wrote to the binary (sha256 %x -> %x):\n%s", before, after, r)
	}
	d.Restart()
}
