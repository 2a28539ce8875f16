package logs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A follower stops when its context ends, even if the writer never finishes.
func TestFollowStopsOnContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, err := NewWriter(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write("stdout", []byte("x\n"), time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	n := 0
	t0 := time.Now()
	err = Read(ctx, path, ReadOptions{Tail: -1, Follow: true, Done: func() bool { return false }}, func(Entry) error { n++; return nil })
	if err != nil || n != 1 || time.Since(t0) > 2*time.Second {
		t.Fatalf("read %d records, err %v, after %v", n, err, time.Since(t0))
	}
}

// A record whose line is written in two pieces (a writer caught mid-append)
// is read once, whole, by a follower; tail 1 with follow starts at the last.
func TestFollowReassemblesPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(`{"log":"old\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}` + "\n")
	f.WriteString(`{"log":"one\n","stream":"stdout","time":"2026-01-01T00:00:01Z"}` + "\n")
	f.WriteString(`{"log":"two\n","stream":"std`)
	var done atomic.Bool
	go func() {
		time.Sleep(120 * time.Millisecond)
		f.WriteString(`err","time":"2026-01-01T00:00:02Z"}` + "\n")
		done.Store(true)
	}()
	var got []string
	err = Read(context.Background(), path, ReadOptions{Tail: 1, Follow: true, Done: done.Load}, func(e Entry) error {
		got = append(got, e.Stream+":"+e.Log)
		return nil
	})
	if err != nil || strings.Join(got, "") != "stdout:one\nstderr:two\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}
