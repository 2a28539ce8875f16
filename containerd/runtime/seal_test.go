package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSealOverlayNotWritable is the write of CVE-2019-5736 against the view
// `shoal runtime` executes its init from: the binary reached through it
// (as a container would through /proc/PID/exe) cannot be opened for
// writing, while the file it shows can through its own path.
func TestSealOverlayNotWritable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := filepath.Join(t.TempDir(), "shoal")
	want := []byte("#!/bin/true\nnot really a binary\n")
	if err := os.WriteFile(bin, want, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := sealOverlay(bin)
	if err != nil {
		t.Skipf("no overlayfs here (the memfd copy is used): %v", err)
	}
	defer f.Close()
	view := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if got, err := os.ReadFile(view); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the view: %q, %v", got, err)
	}
	w, err := os.OpenFile(view, os.O_WRONLY, 0)
	if err == nil {
		w.Close()
		t.Fatal("the binary could be opened for writing through the view")
	}
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("open for writing: %v, want EROFS", err)
	}
	if !isSealed(view) {
		t.Error("isSealed does not recognise the view (a shim started from it would make another)")
	}
	if isSealed(bin) {
		t.Error("isSealed takes the writable file for sealed")
	}
	// The protection is the view, not the file: it stays writable.
	w, err = os.OpenFile(bin, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("the test's own file: %v", err)
	}
	w.Close()
}

// TestSealedSelfMemfdFallback checks the copy made where overlayfs fails.
func TestSealedSelfMemfdFallback(t *testing.T) {
	f, err := sealCopy("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	view := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if !isSealed(view) {
		t.Fatal("the memfd copy is not sealed")
	}
	// Seals refuse the write, not the open.
	w, err := os.OpenFile(view, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer w.Close()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("the sealed copy could be written")
	}
}

// TestSealedCopyKeepsTheDescriptorTable: a sealed copy lands above the
// descriptors a child is handed and inside a new process's descriptor
// table. Growing that table in a process with threads waits for an RCU
// grace period (8 ms of a 25 ms `runtime run` when the copy went to 1000).
// FDSize in /proc/self/status is the table's size.
func TestSealedCopyKeepsTheDescriptorTable(t *testing.T) {
	before := fdTableSize(t)
	f, err := SealedCopy("seal-test", bytes.NewReader([]byte("#!/bin/true\n")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fd := int(f.Fd()); fd < highFD || fd >= 64 {
		t.Fatalf("sealed copy at descriptor %d, want %d..63", fd, highFD)
	}
	if after := fdTableSize(t); after != before {
		t.Fatalf("the descriptor table grew from %d to %d", before, after)
	}
}

// fdTableSize is FDSize of /proc/self/status.
func fdTableSize(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, line := range bytes.Split(b, []byte("\n")) {
		if _, err := fmt.Sscanf(string(line), "FDSize:\t%d", &n); err == nil {
			return n
		}
	}
	t.Fatal("no FDSize in /proc/self/status")
	return 0
}
