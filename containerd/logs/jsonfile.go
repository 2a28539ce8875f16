// Package logs keeps container output by log driver: Docker's json-file
// format (one JSON object per line,
// {"log":"...","stream":"stdout|stderr","time":"RFC3339Nano"}, so tools that
// read Docker's logs read ours), the compact local format (local.go), or
// nothing (none); files rotate by size as dockerd's (x.log.1, x.log.1.gz).
package logs

import (
	"bufio"
	"compress/gzip"
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

// Writer appends records to a container's log in its driver's format,
// rotating it as its Config says. It is safe for concurrent use by the
// stdout and stderr copiers.
//
// A record that cannot be written (a full disk) is dropped, not retried: the
// container's output must keep flowing. Once a write succeeds again, a note
// on stderr ("shoal: N log records lost: ERROR") comes first, so that the log
// says where it has a hole and why.
type Writer struct {
	mu      sync.Mutex // guards everything below and the record order
	path    string
	cfg     Config
	f       *os.File // nil for the none driver
	size    int64    // bytes in f
	lost    int      // records dropped since the last successful write
	lostErr error    // why the last one was dropped
	// torn is set when a failed write may have left part of a record: the
	// next write repairs it (a newline in json-file, so that the part stays
	// a line of its own that readers skip; a truncation in local, whose
	// frames cannot resynchronise) instead of spoiling the next record.
	torn bool
}

// NewWriter opens (creating if needed) the log at path for appending.
func NewWriter(path string, cfg Config) (*Writer, error) {
	w := &Writer{path: path, cfg: cfg}
	if cfg.driver() == DriverNone {
		return w, nil
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// encode renders a record in the driver's format.
func (w *Writer) encode(e Entry) ([]byte, error) {
	if w.cfg.driver() == DriverLocal {
		return encodeLocal(e), nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Write appends one record. On an error the record is lost (and counted
// for the note above).
func (w *Writer) Write(stream string, line []byte, t time.Time) error {
	if w.cfg.driver() == DriverNone {
		return nil
	}
	b, err := w.encode(Entry{Log: string(line), Stream: stream, Time: t.UTC()})
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost > 0 {
		note, err := w.encode(Entry{Log: fmt.Sprintf("shoal: %d log records lost: %v\n", w.lost, w.lostErr), Stream: "stderr", Time: t.UTC()})
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

// appendLocked writes one encoded record, rotating first if it would take
// the file past MaxSize (a file holds at least one record).
func (w *Writer) appendLocked(rec []byte) error {
	if w.f == nil {
		// A rotation renamed the file but could not open the next one
		// (a full disk): try again, the record is lost if it fails.
		if err := w.open(); err != nil {
			return err
		}
	}
	if w.cfg.MaxSize > 0 && w.size > 0 && w.size+int64(len(rec)) > w.cfg.MaxSize {
		if err := w.rotateLocked(); err != nil {
			return err
		}
	}
	if w.torn {
		if w.cfg.driver() == DriverLocal {
			if err := w.f.Truncate(w.size); err != nil {
				return err
			}
		} else {
			rec = append([]byte{'\n'}, rec...)
		}
	}
	n, err := w.f.Write(rec)
	if err != nil {
		w.torn = w.torn || n > 0
		if w.cfg.driver() == DriverJSONFile {
			w.size += int64(n)
		}
		return err
	}
	w.torn = false
	w.size += int64(n)
	return nil
}

// rotateLocked shifts x.log.N-1 to x.log.N ... x.log to x.log.1 (the
// oldest falls off), gzips x.log.1 if Compress, and starts a new x.log, as
// dockerd. With MaxFile 1 the file is cut back to empty instead.
func (w *Writer) rotateLocked() error {
	n := w.cfg.maxFiles()
	if n < 2 {
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("rotate log: %w", err)
		}
		w.size, w.torn = 0, false
		return nil
	}
	for _, sfx := range []string{"", ".gz"} {
		if err := os.Remove(fmt.Sprintf("%s.%d%s", w.path, n-1, sfx)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	for i := n - 2; i >= 1; i-- {
		for _, sfx := range []string{"", ".gz"} {
			err := os.Rename(fmt.Sprintf("%s.%d%s", w.path, i, sfx), fmt.Sprintf("%s.%d%s", w.path, i+1, sfx))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("rotate log: %w", err)
			}
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	w.f.Close()
	w.f, w.torn = nil, false
	if err := w.open(); err != nil {
		return err
	}
	if w.cfg.Compress {
		// In the write path, not in the background: the rotated file is
		// at most MaxSize and readers find either x.log.1 or x.log.1.gz.
		if err := gzipFile(w.path + ".1"); err != nil {
			return fmt.Errorf("compress rotated log: %w", err)
		}
	}
	return nil
}

// gzipFile replaces path with path.gz, written whole before the rename.
func gzipFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(path+".gz.tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".gz.tmp", path+".gz")
	}
	if err != nil {
		os.Remove(path + ".gz.tmp")
		return err
	}
	return os.Remove(path)
}

// Close closes the log file.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

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
