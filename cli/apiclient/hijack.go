package apiclient

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
)

// Hijacked is a connection the daemon took over from HTTP (attach, exec
// start): the container's streams, multiplexed unless it has a TTY.
type Hijacked struct {
	Conn   net.Conn
	Reader *bufio.Reader // reads Conn, starting with what came with the answer
}

// CloseWrite half-closes the connection: the container's stdin ends.
func (h *Hijacked) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection.
func (h *Hijacked) Close() error { return h.Conn.Close() }

// hijack sends a POST that asks to upgrade the connection and returns the
// connection once the daemon answers 101 (or 200, as daemons before API
// 1.42 do). An error answer is returned as *Error.
func (c *Client) hijack(ctx context.Context, p string, q url.Values, body any) (_ *Hijacked, retErr error) {
	b, header, err := encodeBody(body, nil)
	if err != nil {
		return nil, err
	}
	header = cloneHeader(header)
	header.Set("Connection", "Upgrade")
	header.Set("Upgrade", "tcp")
	req := &request{method: "POST", target: c.path(p, q), host: dummyHost, header: header, body: b}
	if err := checkTarget(req.target); err != nil {
		return nil, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	// A cancelled context ends the exchange; once hijacked, the caller
	// owns the connection.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		if !stop() && retErr == nil {
			retErr = ctx.Err()
		}
		if retErr != nil {
			conn.Close()
		}
	}()
	length := req.length()
	w := bufio.NewWriter(conn)
	req.writeHead(w, length)
	if err := req.writeBody(w, length); err != nil {
		return nil, fmt.Errorf("POST %s: %w", p, err)
	}
	br := bufio.NewReader(conn)
	resp, err := readHead(br)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", p, err)
	}
	switch {
	case resp.StatusCode >= 400:
		f, err := framed("POST", resp, br)
		if err != nil {
			return nil, fmt.Errorf("POST %s: %w", p, err)
		}
		resp.Body = io.NopCloser(f.r)
		return nil, readError(resp)
	case resp.StatusCode != 101 && resp.StatusCode != 200:
		return nil, fmt.Errorf("POST %s: unable to upgrade to tcp, received %d", p, resp.StatusCode)
	}
	return &Hijacked{Conn: conn, Reader: br}, nil
}
