// Package logs keeps container output in Docker's json-file format: one JSON
// object per line, {"log":"...","stream":"stdout|stderr","time":"RFC3339Nano"},
// so tools that read Docker's logs read ours.
package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// maxLine is where a long line is cut into partial records, as Docker does
// (16 KiB); a partial record's log does not end in a newline.
const maxLine = 16 * 1024

// Entry is one record of the log.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Writer appends records to a json-file log. It is safe for concurrent use by
// the stdout and stderr copiers.
//
// A record that cannot be written (a full disk) is dropped, not retried: the
// container's output must keep flowing. Once a write succeeds again, a note
// on stderr ("shoal: N log records lost: ERROR") comes first, so that the log
// says where it has a hole and why.
type Writer struct {
	mu      sync.Mutex // guards everything below and the record order
	f       *os.File
	lost    int   // records dropped since the last successful write
	lostErr error // why the last one was dropped
	// torn is set when a failed write may have left part of a record: the
	// next write starts with a newline, so that the part stays a line of
	// its own (which readers skip) instead of spoiling the next record.
	torn bool
}

// NewWriter opens (creating if needed) the log at path for appending.
func NewWriter(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return &Writer{f: f}, nil
}

// Write appends one record. On an error the record is lost (and counted
// for the note above).
func (w *Writer) Write(stream string, line []byte, t time.Time) error {
	b, err := json.Marshal(Entry{Log: string(line), Stream: stream, Time: t.UTC()})
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost > 0 {
		note, err := json.Marshal(Entry{Log: fmt.Sprintf("shoal: %d log records lost: %v\n", w.lost, w.lostErr), Stream: "stderr", Time: t.UTC()})
		if err == nil {
			err = w.appendLocked(note)
		}
		if err != nil {
			w.lost++
			w.lostErr = err
			return fmt.Errorf("write log: %w", err)
		}
		w.lost, w.lostErr = 0, nil
	}
	if err := w.appendLocked(b); err != nil {
		w.lost++
		w.lostErr = err
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// appendLocked writes one JSON record and its newline.
func (w *Writer) appendLocked(rec []byte) error {
	buf := make([]byte, 0, len(rec)+2)
	if w.torn {
		buf = append(buf, '\n')
	}
	buf = append(append(buf, rec...), '\n')
	n, err := w.f.Write(buf)
	if err != nil {
		w.torn = w.torn || n > 0
		return err
	}
	w.torn = false
	return nil
}

// Close closes the log file.
func (w *Writer) Close() error { return w.f.Close() }

// Copy reads r until EOF and writes each line (or 16 KiB piece) as a record of
// stream; tee, if not nil, gets every piece too (for attached clients).
// A failed write does not stop it: r is drained to the end (a container
// whose pipe is not read blocks once it is full), and the first write error
// is returned at EOF.
func Copy(w *Writer, stream string, r io.Reader, tee func(stream string, b []byte)) error {
	br := bufio.NewReaderSize(r, maxLine)
	var writeErr error
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			now := time.Now()
			if werr := w.Write(stream, line, now); werr != nil && writeErr == nil {
				writeErr = werr
			}
			if tee != nil {
				tee(stream, line)
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return writeErr
		default:
			return err
		}
	}
}

// ReadOptions select what Read returns.
type ReadOptions struct {
	// Tail keeps only the last Tail records (negative: all).
	Tail int
	// Since drops records older than it.
	Since time.Time
	// Follow keeps reading new records until Done returns true and the file is drained, or ctx ends.
	Follow bool
	// Done reports whether the writer has finished (the container exited).
	Done func() bool
}

// Read calls fn for each record of the log at path.
func Read(ctx context.Context, path string, opts ReadOptions, fn func(Entry) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var pending []byte
	var tail []Entry
	first := true
	emit := func(e Entry) error {
		if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
			return nil
		}
		if first && opts.Tail >= 0 {
			tail = append(tail, e)
			if len(tail) > opts.Tail {
				tail = tail[1:]
			}
			return nil
		}
		return fn(e)
	}
	for {
		chunk, err := br.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			var e Entry
			if jerr := json.Unmarshal(bytes.TrimSpace(pending), &e); jerr == nil {
				if ferr := emit(e); ferr != nil {
					return ferr
				}
			}
			pending = pending[:0]
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read log: %w", err)
		}
		// At the end of what is written so far.
		if first {
			first = false
			for _, e := range tail {
				if ferr := fn(e); ferr != nil {
					return ferr
				}
			}
			tail = nil
		}
		if !opts.Follow {
			return nil
		}
		if opts.Done != nil && opts.Done() {
			// One more pass: the writer may have flushed between our read and Done.
			if more, _ := br.Peek(1); len(more) == 0 {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}
