package logs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCopyWritesDockerJSONFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, err := NewWriter(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxLine+10) + "\n"
	var teed []string
	if err := Copy(w, "stdout", strings.NewReader("one\ntwo\n"+long+"tail-without-newline"), func(s string, b []byte) { teed = append(teed, string(b)) }); err != nil {
		t.Fatal(err)
	}
	w.Close()
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 records (2 lines, a long line in 2 parts, a tail), got %d:\n%s", len(lines), raw)
	}
	var e map[string]string
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e["log"] != "one\n" || e["stream"] != "stdout" {
		t.Fatalf("first record %s: %v", lines[0], err)
	}
	if _, err := time.Parse(time.RFC3339Nano, e["time"]); err != nil || !strings.HasSuffix(e["time"], "Z") {
		t.Fatalf("time %q is not RFC3339Nano UTC", e["time"])
	}
	var part Entry
	json.Unmarshal([]byte(lines[2]), &part)
	if len(part.Log) != maxLine || strings.HasSuffix(part.Log, "\n") {
		t.Fatalf("a long line's first part should be a %d-byte partial record, got %d bytes", maxLine, len(part.Log))
	}
	if len(teed) != 5 {
		t.Fatalf("tee saw %d pieces, want 5", len(teed))
	}
}

func TestReadTailSinceFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, _ := NewWriter(path, Config{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		w.Write("stdout", []byte{byte('a' + i), '\n'}, base.Add(time.Duration(i)*time.Second))
	}
	collect := func(opts ReadOptions) string {
		var b strings.Builder
		if err := Read(context.Background(), path, opts, func(e Entry) error { b.WriteString(strings.TrimSpace(e.Log)); return nil }); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := collect(ReadOptions{Tail: -1}); got != "abcde" {
		t.Fatalf("all: %q", got)
	}
	if got := collect(ReadOptions{Tail: 2}); got != "de" {
		t.Fatalf("tail 2: %q", got)
	}
	if got := collect(ReadOptions{Tail: -1, Since: base.Add(3 * time.Second)}); got != "de" {
		t.Fatalf("since: %q", got)
	}
	// Follow sees records written later and stops once the writer is done.
	var done atomic.Bool
	go func() {
		time.Sleep(100 * time.Millisecond)
		w.Write("stderr", []byte("late\n"), time.Now())
		done.Store(true)
	}()
	if got := collect(ReadOptions{Tail: -1, Follow: true, Done: done.Load}); got != "abcdelate" {
		t.Fatalf("follow: %q", got)
	}
	if err := Read(context.Background(), filepath.Join(t.TempDir(), "missing"), ReadOptions{Tail: -1}, func(Entry) error { return nil }); err != nil {
		t.Fatalf("a missing log is empty, not an error: %v", err)
	}
}
