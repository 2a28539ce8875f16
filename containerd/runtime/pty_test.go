package runtime

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
