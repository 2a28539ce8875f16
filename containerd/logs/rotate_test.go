package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// writeLines writes "line 1".."line n" (stderr for every tenth) to w.
func writeLines(t *testing.T, w *Writer, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		stream := "stdout"
		if i%10 == 0 {
			stream = "stderr"
		}
		if err := w.Write(stream, []byte(fmt.Sprintf("line %d\n", i)), time.Unix(1000+int64(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
}

func readAll(t *testing.T, path string, opts ReadOptions) []string {
	t.Helper()
	var got []string
	err := Read(context.Background(), path, opts, func(e Entry) error {
		if (e.Stream == "stderr") != strings.HasSuffix(e.Log, "0\n") {
			t.Errorf("record %+v on the wrong stream", e)
		}
		got = append(got, strings.TrimSuffix(e.Log, "\n"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// consecutive checks that got is "line K".."line last".
func consecutive(got []string, last int) bool {
	for i, l := range got {
		if l != fmt.Sprintf("line %d", last-len(got)+1+i) {
			return false
		}
	}
	return len(got) > 0
}

// Both drivers rotate at max-size, keep max-file files (gzipped when asked)
// and read back in order across them, --tail and since/until included.
func TestRotateAndReadBack(t *testing.T) {
	for _, c := range []struct {
		driver string
		opts   map[string]string
		files  string
	}{
		{DriverJSONFile, map[string]string{"max-size": "1k", "max-file": "3"}, "c.log c.log.1 c.log.2"},
		{DriverJSONFile, map[string]string{"max-size": "1k", "max-file": "3", "compress": "true"}, "c.log c.log.1.gz c.log.2.gz"},
		{DriverLocal, map[string]string{"max-size": "1k"}, "c.log c.log.1.gz c.log.2.gz c.log.3.gz c.log.4.gz"},
		{DriverLocal, map[string]string{"max-size": "1k", "max-file": "2", "compress": "false"}, "c.log c.log.1"},
		{DriverJSONFile, map[string]string{"max-size": "1k", "max-file": "1"}, "c.log"},
	} {
		t.Run(fmt.Sprint(c.driver, c.opts), func(t *testing.T) {
			cfg, err := ParseConfig(c.driver, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "c.log")
			w, err := NewWriter(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			writeLines(t, w, 1, 500)
			w.Close()
			if got := dirNames(t, dir); got != c.files {
				t.Fatalf("files %q, want %q", got, c.files)
			}
			for _, name := range strings.Fields(c.files) {
				if st, _ := os.Stat(filepath.Join(dir, name)); st.Size() > 1000 {
					t.Fatalf("%s is %d bytes, over max-size", name, st.Size())
				}
			}
			all := readAll(t, path, ReadOptions{Config: cfg, Tail: -1})
			if !consecutive(all, 500) || len(all) < 10 {
				t.Fatalf("read %q", all)
			}
			if got := readAll(t, path, ReadOptions{Config: cfg, Tail: 7}); !consecutive(got, 500) || len(got) != 7 {
				t.Fatalf("tail 7: %q", got)
			}
			window := ReadOptions{Config: cfg, Tail: -1, Since: time.Unix(1000+495, 0), Until: time.Unix(1000+498, 0)}
			if got := readAll(t, path, window); !consecutive(got, 498) || len(got) != 4 {
				t.Fatalf("since/until: %q", got)
			}
		})
	}
}

// A local record round-trips: stream, time to the nanosecond, bytes
// (newline or not); a torn frame at the end is not a record.
func TestLocalFraming(t *testing.T) {
	at := time.Date(2026, 12, 4, 1, 2, 3, 456789012, time.UTC)
	in := Entry{Log: "a \x00 line without newline", Stream: "stderr", Time: at}
	b := encodeLocal(in)
	e, n, ok := splitLocal(append(b, encodeLocal(in)[:5]...))
	if !ok || n != len(b) || e != in {
		t.Fatalf("round trip: %+v %d %v", e, n, ok)
	}
	if _, n, _ := splitLocal(b[:len(b)-1]); n != 0 {
		t.Fatal("a cut frame counts as whole")
	}
	bad := append([]byte{}, b...)
	bad[len(bad)-1] ^= 1
	if _, n, ok := splitLocal(bad); ok || n == 0 {
		t.Fatal("a frame whose trailer does not match is taken")
	}
}

// A follower started before the rotations reads every line once, in order,
// across rotations (compressed ones too), also when several happen between
// two of its looks, as long as it is not max-file files behind.
func TestFollowAcrossRotation(t *testing.T) {
	for _, driver := range []string{DriverJSONFile, DriverLocal} {
		t.Run(driver, func(t *testing.T) {
			cfg, err := ParseConfig(driver, map[string]string{"max-size": "1k", "max-file": "4", "compress": "true"})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "c.log")
			w, err := NewWriter(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var done atomic.Bool
			go func() {
				for i := 1; i <= 200; i += 2 {
					writeLines(t, w, i, i+1)
					time.Sleep(5 * time.Millisecond)
				}
				done.Store(true)
			}()
			var got []string
			err = Read(context.Background(), path, ReadOptions{Config: cfg, Tail: -1, Follow: true, Done: done.Load}, func(e Entry) error {
				got = append(got, strings.TrimSuffix(e.Log, "\n"))
				return nil
			})
			if err != nil || len(got) != 200 || !consecutive(got, 200) {
				t.Fatalf("followed %d lines (%v): %q", len(got), err, got)
			}
		})
	}
}

// The none driver keeps nothing and refuses reads, as dockerd.
func TestNoneDriver(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig(DriverNone, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(filepath.Join(dir, "c.log"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 1, 3)
	w.Close()
	if got := dirNames(t, dir); got != "" {
		t.Fatalf("none wrote %q", got)
	}
	if err := Read(context.Background(), filepath.Join(dir, "c.log"), ReadOptions{Config: cfg}, nil); err != ErrNotReadable {
		t.Fatalf("read: %v", err)
	}
}

// Options are checked as dockerd's drivers check them.
func TestParseConfig(t *testing.T) {
	for _, c := range []struct {
		driver string
		opts   map[string]string
		want   string // error text, or the Config as %+v
	}{
		{"", nil, "{Driver:json-file MaxSize:0 MaxFile:1 Compress:false}"},
		{"json-file", map[string]string{"max-size": "10m", "max-file": "3", "compress": "true"}, "{Driver:json-file MaxSize:10000000 MaxFile:3 Compress:true}"},
		{"local", nil, "{Driver:local MaxSize:20000000 MaxFile:5 Compress:true}"},
		{"local", map[string]string{"compress": "false", "max-file": "1"}, "{Driver:local MaxSize:20000000 MaxFile:1 Compress:false}"},
		{"none", nil, "{Driver:none MaxSize:0 MaxFile:1 Compress:false}"},
		{"gelf", nil, "logger: no log driver named 'gelf' is registered"},
		{"json-file", map[string]string{"tag": "x"}, "unknown log opt 'tag' for json-file log driver"},
		{"local", map[string]string{"env": "A"}, "unknown log opt 'env' for log driver local"},
		{"json-file", map[string]string{"max-size": "0"}, "max-size must be a positive number"},
		{"json-file", map[string]string{"max-file": "0"}, "max-file cannot be less than 1"},
		{"json-file", map[string]string{"max-size": "1k", "compress": "true"}, "compress cannot be true when max-file is less than 2 or max-size is not set"},
		{"local", map[string]string{"max-file": "1"}, "compression cannot be enabled when max file count is 1"},
	} {
		cfg, err := ParseConfig(c.driver, c.opts)
		got := fmt.Sprintf("%+v", cfg)
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s %v: %s, want %s", c.driver, c.opts, got, c.want)
		}
	}
}

// --details attributes: the picked labels and env, sorted and escaped.
func TestDetails(t *testing.T) {
	got := Details(map[string]string{"labels": "b,missing", "env-regex": "^S"},
		map[string]string{"a": "1", "b": "x y"}, []string{"STAGE=prod", "OTHER=1", "SHELL=a=b"})
	if got != "SHELL=a%3Db,STAGE=prod,b=x+y" {
		t.Fatalf("details %q", got)
	}
}

// TestReadOfAFloodEnds: a read without follow of a log that the writer
// keeps rotating ends with what it found, instead of chasing rotations for
// as long as the writer writes (`logs --tail 3` of a container flooding its
// log took up to 20 s, or never ended). Here the writer writes a rotation's
// worth for every record the reader passes on, so that without the bound
// the read never ends; the callback stops it after 1,000 records.
func TestReadOfAFloodEnds(t *testing.T) {
	cfg, err := ParseConfig(DriverJSONFile, map[string]string{"max-size": "1k", "max-file": "2"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pad := strings.Repeat("x", 1100)
	n := 0
	write := func() {
		n++
		if err := w.Write("stdout", []byte(fmt.Sprintf("line %d %s\n", n, pad)), time.Unix(int64(n), 0)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		write()
	}
	read := 0
	err = Read(context.Background(), path, ReadOptions{Config: cfg, Tail: -1}, func(e Entry) error {
		if read++; read > 1000 {
			return fmt.Errorf("still reading after %d records", read)
		}
		write() // the writer outruns the reader: one rotation per record
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
