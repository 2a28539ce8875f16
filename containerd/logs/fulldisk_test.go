package logs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCopyKeepsDrainingOnFullDisk writes a container's output into a log
// on a full filesystem (a 256 KiB tmpfs): the copier keeps reading the
// pipe, so the writer never blocks; the records that did not fit are
// reported in the log once there is room again, and no record is torn.
func TestCopyKeepsDrainingOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	// Most of the room goes to a filler, freed later to make room again.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte("x"), 200<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c-json.log")
	w, err := NewWriter(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	copied := make(chan error, 1)
	var teed atomic.Int64
	go func() {
		copied <- Copy(w, "stdout", pr, func(string, []byte) { teed.Add(1) })
	}()
	// 2 MiB of output, far more than the disk and the pipe (64 KiB) hold.
	line := strings.Repeat("y", 1000) + "\n"
	const lines = 2000
	wrote := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < lines && err == nil; i++ {
			_, err = pw.WriteString(line)
		}
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		pw.Close()
		t.Fatal("the container's output blocked: the log copier stopped draining the pipe on a full disk")
	}
	// Every line read (the last ones may still sit in the pipe), then room
	// again: what comes next is logged, after a note of what was lost.
	for deadline := time.Now().Add(20 * time.Second); teed.Load() < lines; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the copier read %d of %d lines", teed.Load(), lines)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case err := <-copied:
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("Copy returned %v, want the write error (ENOSPC)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Copy did not return at EOF")
	}
	if n := teed.Load(); n != lines+1 {
		t.Errorf("attached clients got %d lines, want %d", n, lines+1)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []Entry
	if err := Read(context.Background(), path, ReadOptions{Tail: -1}, func(e Entry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n := len(got)
	if n < 3 {
		t.Fatalf("%d records in the log", n)
	}
	if got[n-1].Log != "after\n" {
		t.Fatalf("last record %q, want the line written once there was room", got[n-1].Log)
	}
	lost := lines - (n - 2)
	want := fmt.Sprintf("shoal: %d log records lost: ", lost)
	if note := got[n-2]; note.Stream != "stderr" || !strings.HasPrefix(note.Log, want) || !strings.Contains(note.Log, "no space left on device") {
		t.Fatalf("record before the last: %+v, want a note starting %q", note, want)
	}
	// Every complete line of the file is a record: a partly written one
	// was cut off by a newline, not glued to the next.
	var bad int
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		if !bytes.HasPrefix(l, []byte(`{"log":`)) || !bytes.HasSuffix(l, []byte("}")) {
			bad++
		}
	}
	if bad > 1 {
		t.Fatalf("%d torn lines in the log", bad)
	}
}

// Rotation on a full disk (the local driver, compressed): records that do
// not fit are lost and counted, none is torn, and once there is room the
// log goes on in order with the note first.
func TestRotateOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte("x"), 50<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(DriverLocal, map[string]string{"max-size": "8k", "max-file": "3"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.log")
	w, err := NewWriter(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	failed := 0
	for i := 0; i < 300; i++ {
		// Random bytes do not compress: the disk fills for real.
		b := make([]byte, 300)
		_, _ = rand.Read(b)
		if w.Write("stdout", []byte(fmt.Sprintf("rec %d %x\n", i, b)), time.Now()) != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("the disk never filled: the test tests nothing")
	}
	os.Remove(filler)
	if err := w.Write("stdout", []byte("after\n"), time.Now()); err != nil {
		t.Fatalf("write with room again: %v", err)
	}
	var got []string
	if err := Read(context.Background(), path, ReadOptions{Config: cfg, Tail: -1}, func(e Entry) error {
		got = append(got, e.Log)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n := len(got)
	if n < 2 || got[n-1] != "after\n" || !strings.HasPrefix(got[n-2], "shoal: ") || !strings.Contains(got[n-2], "log records lost") {
		t.Fatalf("log ends with %q", got[max(0, n-3):])
	}
	last := -1
	for _, l := range got[:n-2] {
		var i int
		if _, err := fmt.Sscanf(l, "rec %d ", &i); err != nil || i <= last {
			t.Fatalf("record %.40q out of order or torn (after %d)", l, last)
		}
		last = i
	}
}
