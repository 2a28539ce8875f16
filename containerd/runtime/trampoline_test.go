package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostBinaryRan is what this test binary does when a container ran it as a
// script's interpreter ("#!/proc/self/exe"): the attack of CVE-2019-5736
// has its first half, the host's binary running as the container's
// process, which could hold it open until it can write it.
func hostBinaryRan() {
	fmt.Println("HOST BINARY RAN")
	os.Exit(0)
}

// The trampoline on its own: it execs its first argument with the rest as
// argv, and fails as a shell does, saying what it was given to say.
func TestTrampoline(t *testing.T) {
	if trampolineELF() == nil {
		t.Skip("no trampoline on this architecture")
	}
	f, err := sealedTrampoline()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	notExec := filepath.Join(dir, "data")
	if err := os.WriteFile(notExec, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("\x01\x02 not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"exec", []string{"/bin/sh", "unused\n", "sh", "-c", `echo "$0 $1 $FOO"`, "zero", "one"}, 0, "zero one bar\n", ""},
		{"not found", []string{"/nonexistent", "no such program\n", "x"}, 127, "", "no such program\n"},
		{"not executable", []string{notExec, "cannot run it\n", "x"}, 126, "", "cannot run it\n"},
		{"not a program", []string{garbage, "exec format\n", "x"}, 1, "", "exec format\n"},
		{"too few arguments", []string{"/bin/true", "x"}, 126, "", ""},
		{"none", nil, 126, "", ""},
	} {
		var stdout, stderr bytes.Buffer
		cmd := &exec.Cmd{Path: fmt.Sprintf("/proc/self/fd/%d", f.Fd()), Args: c.args,
			Env: []string{"FOO=bar"}, Stdout: &stdout, Stderr: &stderr}
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if code != c.code || stdout.String() != c.stdout || stderr.String() != c.stderr {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, %q, %q", c.name, code, stdout.String(), stderr.String(), c.code, c.stdout, c.stderr)
		}
	}
}

// CVE-2019-5736 through the cloned first process of an unsealed binary
// (`shoal runtime run` from disk, this test's binary): the container's
// program is a script whose interpreter is /proc/self/exe. Executed by the
// cloned process, whose /proc/self/exe is this binary, it would run the
// host's binary in the container (it did, before the trampoline: exit 0,
// "HOST BINARY RAN"); executed by the trampoline, it runs the trampoline
// again, which refuses (exit 126).
func TestFirstProcScriptCannotRunHostBinary(t *testing.T) {
	requireFirstProc(t)
	r := newRuntime(t)
	o := newOutput(t)
	bundle := newBundle(t, nil, "/evil")
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "evil"), []byte("#!/proc/self/exe\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := firstProcStarts.Load()
	code, err := r.Run(ctx(t), "evil", bundle, o.opts())
	stdout, stderr := o.String()
	if err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, stderr)
	}
	if firstProcStarts.Load() != before+1 {
		t.Fatal("the container did not start through the cloned first process")
	}
	if strings.Contains(stdout, "HOST BINARY RAN") || code != 126 {
		t.Fatalf("the script's interpreter was not the sealed trampoline: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// A program the kernel refuses although it passed the runtime's checks (an
// executable file that is no program) fails in the trampoline: the
// container exits 1 and says so on its stderr, as a first process whose
// start was requested apart does.
func TestFirstProcTrampolineExecFailure(t *testing.T) {
	requireFirstProc(t)
	r := newRuntime(t)
	o := newOutput(t)
	bundle := newBundle(t, func(s *specs.Spec) { s.Process.Args = []string{"/garbage"} })
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "garbage"), []byte("\x01\x02 not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, err := r.Run(ctx(t), "garbage", bundle, o.opts())
	_, stderr := o.String()
	if err != nil || code != 1 || !strings.Contains(stderr, "shoal-init: exec /garbage failed") {
		t.Fatalf("want exit 1 and the trampoline's message; got exit %d, %v, stderr %q", code, err, stderr)
	}
}
