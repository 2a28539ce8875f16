package apiclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingDaemon serves h on a unix socket, counting the connections the
// client opened, and can close the idle ones (as a daemon's idle timeout).
type countingDaemon struct {
	c     *Client
	conns atomic.Int32
	mu    sync.Mutex
	idle  map[net.Conn]bool
}

func newCountingDaemon(t *testing.T, h http.Handler) *countingDaemon {
	t.Helper()
	d := &countingDaemon{idle: map[net.Conn]bool{}}
	dir := t.TempDir()
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnState: func(c net.Conn, s http.ConnState) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch s {
		case http.StateNew:
			d.conns.Add(1)
		case http.StateIdle:
			d.idle[c] = true
		default:
			delete(d.idle, c)
		}
	}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	if d.c, err = New("unix://" + sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.c.Close() })
	return d
}

// closeIdle closes the daemon's side of every idle connection.
func (d *countingDaemon) closeIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.idle {
		c.Close()
	}
}

// TestWireFraming: answers with a Content-Length, chunked ones flushed
// piece by piece, empty ones and HEAD answers are read whole, and the
// connection is used again for the next request.
func TestWireFraming(t *testing.T) {
	big := strings.Repeat("0123456789", 10000)
	d := newCountingDaemon(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v" + APIVersion + "/length":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"Got":` + string(body) + `}`))
		case "/v" + APIVersion + "/chunked":
			for i := 0; i < 5; i++ {
				w.Write([]byte(big[:1000*(i+1)]))
				w.(http.Flusher).Flush()
			}
		case "/v" + APIVersion + "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/v" + APIVersion + "/head":
			w.Header().Set("X-Docker-Container-Path-Stat", "e30=")
			w.Header().Set("Content-Length", "100")
		}
	}))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		var out struct{ Got []int }
		if err := d.c.post(ctx, "/length", nil, []int{i, 2}, &out); err != nil || len(out.Got) != 2 || out.Got[0] != i {
			t.Fatalf("POST /length: %v %v", out, err)
		}
		rc, err := d.c.stream(ctx, Request{Method: "GET", Path: "/chunked"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if want := big[:1000] + big[:2000] + big[:3000] + big[:4000] + big[:5000]; err != nil || string(b) != want {
			t.Fatalf("chunked answer: %d bytes, %v; want %d", len(b), err, len(want))
		}
		if err := d.c.post(ctx, "/empty", nil, nil, nil); err != nil {
			t.Fatalf("204: %v", err)
		}
		resp, err := d.c.Do(ctx, Request{Method: "HEAD", Path: "/head"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if _, err := pathStat(resp.Header); err != nil {
			t.Fatalf("HEAD's header: %v", err)
		}
	}
	if n := d.conns.Load(); n != 1 {
		t.Errorf("12 requests one after the other took %d connections, want 1", n)
	}
}

// TestWireIdleClosedByDaemon: a request on a kept connection that the
// daemon closed meanwhile goes again on a new one, with its body.
func TestWireIdleClosedByDaemon(t *testing.T) {
	d := newCountingDaemon(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		var out []string
		if err := d.c.post(ctx, "/echo", nil, []string{"a", "b"}, &out); err != nil || len(out) != 2 {
			t.Fatalf("request %d: %v %v", i, out, err)
		}
		// The server marks the connection idle after the answer is sent.
		deadline := time.Now().Add(5 * time.Second)
		for {
			d.mu.Lock()
			n := len(d.idle)
			d.mu.Unlock()
			if n > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		d.closeIdle()
	}
	if n := d.conns.Load(); n != 3 {
		t.Errorf("3 requests, each after the daemon closed the last connection, took %d connections, want 3", n)
	}
}

// TestWireStreamAnsweredEarly: the daemon answers an error before it read
// a streamed body; the client returns that error rather than hang
// writing or report the broken write.
func TestWireStreamAnsweredEarly(t *testing.T) {
	d := newCountingDaemon(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"message":"not a tar archive"}`))
	}))
	pr, pw := io.Pipe()
	go func() {
		// Much more than the socket buffers hold, never ending on its own.
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	defer pw.Close()
	done := make(chan error, 1)
	go func() {
		_, err := d.c.stream(context.Background(), Request{Method: "POST", Path: "/images/load", Body: pr})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || err.Error() != "Error response from daemon: not a tar archive" {
			t.Fatalf("got %v, want the daemon's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client hung on a stream the daemon answered before reading it")
	}
}

// TestWireCancel: cancelling the context ends a body being read (a
// `logs -f`) at once, with the context's error.
func TestWireCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	d := newCountingDaemon(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first line\n"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := d.c.stream(ctx, Request{Method: "GET", Path: "/logs"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 100)
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "first line\n" {
		t.Fatalf("first read: %q %v", buf[:n], err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %v to end the read", d)
	}
}

// TestWireHostileAnswers: malformed or truncated answers are errors, never
// a panic, a hang or a body taken as whole.
func TestWireHostileAnswers(t *testing.T) {
	cases := map[string]string{
		"status line":       "HTTP/1.1 OK\r\n\r\n",
		"not HTTP":          "SSH-2.0-OpenSSH\r\n\r\n",
		"header":            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"negative length":   "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"short body":        "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"a\":1",
		"chunk size":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
		"chunk too long":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1", 5000) + "\r\n",
		"chunk end":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
		"chunked truncated": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
		"nothing":           "",
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "d.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf) // the request
				c.Write([]byte(answer))
			}()
			c, err := New("unix://" + sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out map[string]any
			err = c.get(ctx, "/x", nil, &out)
			if err == nil {
				t.Fatalf("answer %q read as %v", answer, out)
			}
			if ctx.Err() != nil {
				t.Fatalf("hung on %q", answer)
			}
		})
	}
}

// TestWireRefusesBrokenTarget: a path that would end the request line
// early (a raw space or line break) is refused before anything is sent.
func TestWireRefusesBrokenTarget(t *testing.T) {
	d := newCountingDaemon(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, p := range []string{"/containers/a b/json", "/x\r\nHost: evil", "/x\x00"} {
		if err := d.c.get(context.Background(), p, nil, nil); err == nil || !strings.Contains(err.Error(), "invalid request path") {
			t.Errorf("GET %q: %v", p, err)
		}
	}
	if n := d.conns.Load(); n != 0 {
		t.Errorf("%d connections made for refused requests", n)
	}
}
