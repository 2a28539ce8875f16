package daemon

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// hijacked is a connection taken over from the HTTP server for attach and
// exec: after the upgrade answer the client's raw stdin comes in, and the
// output goes out as stdcopy frames.
type hijacked struct {
	conn    net.Conn
	in      io.Reader // what the client sends after the request, buffered bytes first
	upgrade bool      // the client asked for "Upgrade: tcp"
	raw     bool      // a TTY's stream: raw bytes, no stdcopy frames
}

// hijack takes over the connection. Nothing is written yet: the caller
// answers with ready once it is ready, so a client waiting for the answer
// (docker run attaches, then starts) knows the attach is registered.
func hijack(w http.ResponseWriter, r *http.Request) (*hijacked, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, fmt.Errorf("connection cannot be hijacked")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	var in io.Reader = conn
	if buf != nil && buf.Reader.Buffered() > 0 {
		in = io.MultiReader(io.LimitReader(buf.Reader, int64(buf.Reader.Buffered())), conn)
	}
	return &hijacked{conn: conn, in: in, upgrade: r.Header.Get("Upgrade") != ""}, nil
}

// ready writes the answer: 101 with docker's multiplexed-stream upgrade, or
// 200 for a client that did not ask to upgrade.
func (h *hijacked) ready() error {
	status := "HTTP/1.1 200 OK\r\n"
	if h.upgrade {
		status = "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
	}
	if _, err := io.WriteString(h.conn, status+"Content-Type: "+streamType(h.raw)+"\r\nApi-Version: "+APIVersion+"\r\n\r\n"); err != nil {
		return err
	}
	waitAnswerRead(h.conn, answerReadWait)
	return nil
}

// answerReadWait bounds how long ready waits for the client to read the
// answer: a client that is slower still gets the stream, only maybe in one
// read with the answer.
const answerReadWait = 200 * time.Millisecond

// waitAnswerRead waits, for at most limit, until the client has read all
// that was written to conn when it is a unix socket (SIOCOUTQ counts the
// bytes the peer has not read yet; TCP's counts unacknowledged ones and
// says nothing about the client, so other connections are not waited for).
// docker-py reads the answer's head through a buffered reader and then the
// stream from the raw socket: stream bytes that arrived in one read with
// the head sit in that buffer and are lost (docker-py issue 2466). dockerd's
// first bytes come late enough for this not to happen; attach's replay of
// the logs, written at once after the answer, lost them every time.
func waitAnswerRead(conn net.Conn, limit time.Duration) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(limit)
	for pause := 50 * time.Microsecond; ; pause = min(2*pause, 2*time.Millisecond) {
		unread := 0
		cerr := rc.Control(func(fd uintptr) {
			unread, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		})
		if cerr != nil || err != nil || unread == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(pause)
	}
}

// streamType is the content type of an output stream: raw for a TTY.
func streamType(raw bool) string {
	if raw {
		return "application/vnd.docker.raw-stream"
	}
	return "application/vnd.docker.multiplexed-stream"
}

// fail answers a request that could not go ahead after the takeover with a
// plain HTTP error, as writeError would have.
func (h *hijacked) fail(err error) {
	status := statusOf(err)
	body := fmt.Sprintf("{\"message\":%q}\n", err.Error())
	fmt.Fprintf(h.conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// streamFilter passes on the stdcopy frames of the streams asked for
// (attach's stdout=/stderr=) and drops the others; with raw (a TTY) it
// passes on their payload only. Frames may arrive split across or packed
// into writes.
type streamFilter struct {
	w              io.Writer
	stdout, stderr bool
	raw            bool

	mu      sync.Mutex // guards the parser state: the engine may write from two goroutines
	hdr     []byte     // the partial header being read
	left    int        // bytes of the current frame's payload still to come
	forward bool       // whether the current frame is passed on
}

func (f *streamFilter) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		if f.left == 0 {
			k := min(8-len(f.hdr), len(b))
			f.hdr = append(f.hdr, b[:k]...)
			b = b[k:]
			if len(f.hdr) < 8 {
				break
			}
			f.left = int(binary.BigEndian.Uint32(f.hdr[4:]))
			f.forward = f.hdr[0] == 1 && f.stdout || f.hdr[0] == 2 && f.stderr || f.hdr[0] == 3 // 3: stdcopy's system error
			if f.forward && !f.raw {
				if _, err := f.w.Write(f.hdr); err != nil {
					return 0, err
				}
			}
			f.hdr = f.hdr[:0]
			continue
		}
		k := min(f.left, len(b))
		if f.forward {
			if _, err := f.w.Write(b[:k]); err != nil {
				return 0, err
			}
		}
		f.left -= k
		b = b[k:]
	}
	return n, nil
}

// flushWriter flushes after every write, for streamed responses (logs -f).
type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func newFlushWriter(w http.ResponseWriter) *flushWriter {
	f, _ := w.(http.Flusher)
	return &flushWriter{w: w, f: f}
}

func (fw *flushWriter) Write(b []byte) (int, error) {
	n, err := fw.w.Write(b)
	fw.Flush()
	return n, err
}

// Flush sends what is buffered.
func (fw *flushWriter) Flush() {
	if fw.f != nil {
		fw.f.Flush()
	}
}
