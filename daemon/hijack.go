package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
)

// hijack takes over the connection for attach and exec, answering 101 with
// docker's multiplexed-stream upgrade (or 200 for clients that did not ask to
// upgrade). The returned reader holds what the client sends after the request.
func hijack(w http.ResponseWriter, r *http.Request) (net.Conn, io.Reader, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("connection cannot be hijacked")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	if r.Header.Get("Upgrade") != "" {
		_, err = fmt.Fprint(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: "+APIVersion+"\r\n\r\n")
	} else {
		_, err = fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nApi-Version: "+APIVersion+"\r\n\r\n")
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	var in io.Reader = conn
	if buf != nil && buf.Reader.Buffered() > 0 {
		in = io.MultiReader(io.LimitReader(buf.Reader, int64(buf.Reader.Buffered())), conn)
	}
	return conn, in, nil
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
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}
