package logs

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ErrNotReadable is dockerd's answer to logs of a container whose driver
// keeps nothing.
var ErrNotReadable = errors.New("configured logging driver does not support reading")

// ReadOptions select what Read returns.
type ReadOptions struct {
	// Config is the log's driver and rotation: it says the format and which
	// rotated files there may be.
	Config Config
	// Tail keeps only the last Tail records (negative: all), counted
	// across the rotated files.
	Tail int
	// Since drops records older than it; Until drops records newer than it
	// and ends a follow once it has passed.
	Since, Until time.Time
	// Follow keeps reading new records until Done returns true and the file
	// is drained, or ctx ends; it goes on in the new file after a rotation.
	Follow bool
	// Done reports whether the writer has finished (the container exited).
	Done func() bool
}

// splitFunc takes the first whole record of buf (see splitLocal).
type splitFunc func(buf []byte) (e Entry, n int, ok bool)

// splitJSON takes the first line of buf; a line that is not a record (the
// part of a torn write) is skipped.
func splitJSON(buf []byte) (Entry, int, bool) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return Entry{}, 0, false
	}
	var e Entry
	err := json.Unmarshal(bytes.TrimSpace(buf[:i]), &e)
	return e, i + 1, err == nil
}

// recordReader cuts records out of a file read in chunks; a record cut in
// two by the end of what is written stays pending until its end comes.
type recordReader struct {
	r       io.Reader
	split   splitFunc
	pending []byte
	buf     []byte
}

// drain reads r to its current end and calls emit for each whole record.
func (rr *recordReader) drain(emit func(Entry) error) error {
	for {
		n, err := rr.r.Read(rr.buf)
		rr.pending = append(rr.pending, rr.buf[:n]...)
		off := 0
		for {
			e, k, ok := rr.split(rr.pending[off:])
			if k == 0 {
				break
			}
			off += k
			if ok {
				if ferr := emit(e); ferr != nil {
					return ferr
				}
			}
		}
		rr.pending = append(rr.pending[:0], rr.pending[off:]...)
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
	}
}

// Read calls fn for each record of the log at path and its rotated files,
// oldest first.
func Read(ctx context.Context, path string, opts ReadOptions, fn func(Entry) error) error {
	cfg := opts.Config
	if cfg.driver() == DriverNone {
		return ErrNotReadable
	}
	split := splitFunc(splitJSON)
	if cfg.driver() == DriverLocal {
		split = splitLocal
	}
	var tail []Entry
	collecting := opts.Tail >= 0
	emit := func(e Entry) error {
		if !opts.Since.IsZero() && e.Time.Before(opts.Since) || !opts.Until.IsZero() && e.Time.After(opts.Until) {
			return nil
		}
		if collecting {
			tail = append(tail, e)
			if len(tail) > opts.Tail {
				tail = tail[1:]
			}
			return nil
		}
		return fn(e)
	}
	live := &liveFile{path: path, split: split, maxFiles: cfg.maxFiles(), snapshot: !opts.Follow}
	for i := cfg.maxFiles() - 1; i >= 1; i-- {
		if err := readRotated(fmt.Sprintf("%s.%d", path, i), split, live.track(emit)); err != nil {
			return err
		}
	}
	defer live.close()
	for {
		done := opts.Follow && opts.Done != nil && opts.Done()
		if err := live.drain(emit); err != nil {
			return err
		}
		if collecting {
			collecting = false
			for _, e := range tail {
				if err := fn(e); err != nil {
					return err
				}
			}
			tail = nil
		}
		if !opts.Follow || done || !opts.Until.IsZero() && time.Now().After(opts.Until) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readRotated reads one rotated file, plain or gzipped, if it is there.
func readRotated(path string, split splitFunc, emit func(Entry) error) error {
	var r io.Reader
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if f, err = os.Open(path + ".gz"); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err == nil {
			defer f.Close()
			zr, zerr := gzip.NewReader(f)
			if zerr != nil {
				return fmt.Errorf("read log %s.gz: %w", path, zerr)
			}
			r = zr
		}
	} else if err == nil {
		defer f.Close()
		r = f
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	rr := &recordReader{r: r, split: split, buf: make([]byte, 32*1024)}
	return rr.drain(emit)
}

// liveFile is the log being written, followed across rotations.
//
// The shim rotates in another process, possibly several times between two
// looks, so a follower cannot rely on the file it holds: it remembers the
// last record it passed on (time to the nanosecond, stream and bytes) and,
// when the path names a new file, finds that record among the rotated files
// and goes on with what follows it, in the rotated files and then in the
// new file (whose part up to the record, if it holds it, is skipped).
type liveFile struct {
	path     string
	split    splitFunc
	maxFiles int
	f        *os.File
	rr       *recordReader
	last     *Entry // the last record passed on
	// snapshot (a read without follow) stops at the first rotation it
	// sees: a writer faster than the reader rotates again and again, and
	// chasing it would never end (`logs --tail 3` of a flooding
	// container hung). What it misses was written after the call began.
	snapshot bool
}

// track wraps emit to remember the last record.
func (l *liveFile) track(emit func(Entry) error) func(Entry) error {
	return func(e Entry) error {
		l.last = &e
		return emit(e)
	}
}

func sameRecord(a, b Entry) bool {
	return a.Time.Equal(b.Time) && a.Stream == b.Stream && a.Log == b.Log
}

// collect reads a rotated file's records (none if it is not there).
func (l *liveFile) collect(path string) ([]Entry, error) {
	var recs []Entry
	err := readRotated(path, l.split, func(e Entry) error { recs = append(recs, e); return nil })
	return recs, err
}

// afterLast passes on the records of recs after the last one passed on,
// all of them if it is not among them; it reports whether it was.
func (l *liveFile) afterLast(recs []Entry, emit func(Entry) error) (bool, error) {
	start := 0
	found := false
	if l.last != nil {
		for i := len(recs) - 1; i >= 0; i-- {
			if sameRecord(recs[i], *l.last) {
				start, found = i+1, true
				break
			}
		}
	}
	for _, e := range recs[start:] {
		if err := emit(e); err != nil {
			return found, err
		}
	}
	return found, nil
}

// catchUp passes on what the rotated files hold after the last record. A
// rotation under way (the files being renumbered) can hide the record for a
// moment: the search is tried again a few times before it gives up (the
// record fell off the kept files: the follower was max-file files behind).
func (l *liveFile) catchUp(emit func(Entry) error) error {
	for try := 0; try < 5; try++ {
		for k := 1; k < l.maxFiles; k++ {
			recs, err := l.collect(fmt.Sprintf("%s.%d", l.path, k))
			if err != nil {
				return err
			}
			i := len(recs) - 1
			for i >= 0 && !sameRecord(recs[i], *l.last) {
				i--
			}
			if i < 0 {
				continue
			}
			for _, e := range recs[i+1:] {
				if err := emit(e); err != nil {
					return err
				}
			}
			for j := k - 1; j >= 1; j-- {
				if err := readRotated(fmt.Sprintf("%s.%d", l.path, j), l.split, emit); err != nil {
					return err
				}
			}
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (l *liveFile) drain(emit func(Entry) error) error {
	emit = l.track(emit)
	for {
		if l.f == nil {
			f, err := os.Open(l.path)
			if errors.Is(err, os.ErrNotExist) {
				return nil // not made yet, or between rename and create
			}
			if err != nil {
				return fmt.Errorf("open log: %w", err)
			}
			l.f = f
			l.rr = &recordReader{r: f, split: l.split, buf: make([]byte, 32*1024)}
			if l.last != nil {
				if err := l.catchUp(emit); err != nil {
					return err
				}
				// The new file's records so far, after the last one
				// passed on if it holds it.
				var recs []Entry
				if err := l.rr.drain(func(e Entry) error { recs = append(recs, e); return nil }); err != nil {
					return err
				}
				if _, err := l.afterLast(recs, emit); err != nil {
					return err
				}
			}
		}
		if err := l.rr.drain(emit); err != nil {
			return err
		}
		cur, err := l.f.Stat()
		if err != nil {
			return fmt.Errorf("stat log: %w", err)
		}
		now, err := os.Stat(l.path)
		if err != nil {
			return nil // mid-rotation: the next pass finds the new file
		}
		if os.SameFile(cur, now) {
			if pos, err := l.f.Seek(0, io.SeekCurrent); err == nil && now.Size() < pos {
				// Cut back to empty (max-file 1): start again at its top.
				_, _ = l.f.Seek(0, io.SeekStart)
				l.rr.pending = l.rr.pending[:0]
			}
			return nil
		}
		// Rotated: what was written before the rename is in the open file.
		if err := l.rr.drain(emit); err != nil {
			return err
		}
		l.close()
		if l.snapshot {
			return nil
		}
	}
}

func (l *liveFile) close() {
	if l.f != nil {
		l.f.Close()
		l.f, l.rr = nil, nil
	}
}
