package runtime

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestOpenPtyInOpensNothingButAPtmx: the daemon opens, as root, what a
// container's tree holds at /dev/pts/ptmx. A tree that puts something else
// there must not have it opened for reading or writing (a device node's
// open alone can act: a tape rewinds). A FIFO shows it: a writer's open of
// it blocks until someone opens it for reading.
func TestOpenPtyInOpensNothingButAPtmx(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	fifo := filepath.Join(root, "dev", "pts", "ptmx")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		close(opened)
	}()
	m, s, err := openPtyInRoot(root)
	if err == nil {
		m.Close()
		s.Close()
		t.Fatal("a pty was opened from a tree without a devpts ptmx")
	}
	select {
	case <-opened:
		t.Fatalf("the FIFO at /dev/pts/ptmx was opened (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	// Release the writer.
	if f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
		<-opened
		f.Close()
	}

	// The host's own tree has a real one.
	m, s, err = openPtyInRoot("/")
	if err != nil {
		t.Fatalf("host devpts: %v", err)
	}
	defer m.Close()
	defer s.Close()
	if _, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); err != nil {
		t.Fatalf("the slave is no terminal: %v", err)
	}
}

// TestCreateConsole: the terminal CreateConsole allocates is the
// container's, on both start paths: tty(1) names it /dev/pts/0 (a host pty
// has no name in the container), it is /dev/console too, the process's
// controlling terminal, and the master the caller gets drives it (its
// size is what the process reads).
func TestCreateConsole(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name  string
		first bool
	}{{"first process", true}, {"go init", false}} {
		t.Run(c.name, func(t *testing.T) {
			if c.first {
				requireFirstProc(t)
			} else {
				t.Setenv("SHOAL_INIT", "go")
			}
			r := newRuntime(t)
			bundle := newBundle(t, func(s *specs.Spec) { s.Process.Terminal = true },
				"sh", "-c", `tty; [ -c /dev/console ] && echo console; stty size; stty -F /dev/console size; echo end`)
			before := firstProcStarts.Load()
			master, err := r.CreateConsole(ctx(t), "ct", bundle, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer master.Close()
			defer r.Delete(ctx(t), "ct", true)
			if cloned := firstProcStarts.Load() != before; cloned != c.first {
				t.Fatalf("started through the cloned first process: %v, want %v", cloned, c.first)
			}
			if err := Resize(master, 33, 77); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(ctx(t), "ct"); err != nil {
				t.Fatal(err)
			}
			got := readUntil(t, master, "end")
			for _, want := range []string{"/dev/pts/0\r\n", "console\r\n", "33 77\r\n33 77\r\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("output %q lacks %q", got, want)
				}
			}
			if code, err := r.Wait(ctx(t), "ct"); err != nil || code != 0 {
				t.Errorf("exit %d, %v", code, err)
			}
		})
	}
	// Without process.terminal there is no console to make.
	r := newRuntime(t)
	if _, err := r.CreateConsole(ctx(t), "nc", newBundle(t, nil, "true"), CreateOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("console without process.terminal: %v", err)
	}
	if ids, _ := r.List(); len(ids) != 0 {
		t.Errorf("left behind: %v", ids)
	}
}

// TestCreateConsoleWithoutDevpts: a spec without a devpts on /dev/pts has
// no terminal of its own to give; the create fails and leaves nothing.
func TestCreateConsoleWithoutDevpts(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	bundle := newBundle(t, func(s *specs.Spec) {
		s.Process.Terminal = true
		var ms []specs.Mount
		for _, m := range s.Mounts {
			if m.Destination != "/dev/pts" {
				ms = append(ms, m)
			}
		}
		s.Mounts = ms
	}, "true")
	if _, err := r.CreateConsole(ctx(t), "np", bundle, CreateOptions{}); err == nil || !strings.Contains(err.Error(), "console") {
		t.Fatalf("console without a devpts: %v", err)
	}
	if ids, _ := r.List(); len(ids) != 0 {
		t.Errorf("left behind: %v", ids)
	}
}

// readUntil reads f until its output holds marker (or 10 s have passed).
func readUntil(t *testing.T, f *os.File, marker string) string {
	t.Helper()
	out := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 512)
		for !strings.Contains(buf.String(), marker) {
			n, err := f.Read(b)
			buf.Write(b[:n])
			if err != nil {
				break
			}
		}
		out <- buf.String()
	}()
	select {
	case s := <-out:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q on the terminal", marker)
		return ""
	}
}

// TestOwnSession: without a terminal too, the container's first process
// leads a session of its own (as under runc, where ps shows it "Ss"), so
// that nothing sent to its starter's process group or session reaches it.
func TestOwnSession(t *testing.T) {
	requireRoot(t)
	for _, first := range []bool{true, false} {
		if first {
			requireFirstProc(t)
		} else {
			t.Setenv("SHOAL_INIT", "go")
		}
		r := newRuntime(t)
		o := newOutput(t)
		// Fields 6 and 5 of stat: session and process group, 1 when pid 1 leads them.
		code, err := r.Run(ctx(t), "sess", newBundle(t, nil, "cut", "-d", " ", "-f", "5,6", "/proc/1/stat"), o.opts())
		stdout, stderr := o.String()
		if err != nil || code != 0 || strings.TrimSpace(stdout) != "1 1" {
			t.Errorf("first process %v: pgid and sid %q (exit %d, %v, %s), want 1 1", first, stdout, code, err, stderr)
		}
	}
}
