package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// The client speaks HTTP/1.1 itself rather than through net/http: on the
// machines of sessions 13-24 and 26, a program that makes one request
// through net/http's Transport took 11.2-12.6 ms of CPU, one that writes
// the request and reads the answer with net/textproto 7.1-8.1 ms (a Go
// hello-world 5.1-5.3), and a CLI command is mostly its start. The daemon
// is the only server it talks to: requests with a Content-Length or
// chunked, answers with either or to the end of the connection, no TLS, no
// proxies, no compression.

// Header is a request's or an answer's header fields, keyed in canonical
// form as net/http's are.
type Header = textproto.MIMEHeader

// Response is the daemon's answer to a request: its status, header and
// body. The caller closes Body.
type Response struct {
	StatusCode int
	Status     string // "404 Not Found"
	Header     Header
	Body       io.ReadCloser
}

// maxIdle is how many connections the client keeps for later requests
// (`run` has its attach, its wait and its other requests open at once).
const maxIdle = 4

// drainLimit is how much of an answer left unread is read on Close so
// that the connection can be used again.
const drainLimit = 64 << 10

// conn is a connection to the daemon with its buffered reader.
type conn struct {
	net.Conn
	br *bufio.Reader
}

// transport holds the connections not in use.
type transport struct {
	dial func(context.Context) (net.Conn, error)
	mu   sync.Mutex
	idle []*conn
}

func (t *transport) get(ctx context.Context) (cn *conn, reused bool, err error) {
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		cn = t.idle[n-1]
		t.idle = t.idle[:n-1]
	}
	t.mu.Unlock()
	if cn != nil {
		return cn, true, nil
	}
	c, err := t.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &conn{Conn: c, br: bufio.NewReader(c)}, false, nil
}

func (t *transport) put(cn *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle) < maxIdle {
		t.idle = append(t.idle, cn)
		return
	}
	cn.Close()
}

// closeIdle closes the connections not in use.
func (t *transport) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, cn := range t.idle {
		cn.Close()
	}
	t.idle = nil
}

// request is one request on the wire.
type request struct {
	method, target, host string
	header               Header
	body                 io.Reader // nil: none
}

// length is the body's length when it is known ahead (-1: sent chunked).
func (r *request) length() int64 {
	switch b := r.body.(type) {
	case nil:
		return 0
	case *bytes.Reader:
		return int64(b.Len())
	case *bytes.Buffer:
		return int64(b.Len())
	case *strings.Reader:
		return int64(b.Len())
	}
	return -1
}

// replayable: the body can be sent again on another connection (it was
// not read yet, or there is none).
func (r *request) replayable() bool {
	switch r.body.(type) {
	case nil:
		return true
	case *bytes.Reader, *strings.Reader:
		return true
	}
	return false
}

// writeHead writes the request line and header fields.
func (r *request) writeHead(w *bufio.Writer, length int64) {
	w.WriteString(r.method + " " + r.target + " HTTP/1.1\r\nHost: " + r.host + "\r\n")
	if r.header.Get("User-Agent") == "" {
		w.WriteString("User-Agent: shoal-cli\r\n")
	}
	for k, vs := range r.header {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") { // it would end the header
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			w.WriteString(k + ": " + v + "\r\n")
		}
	}
	switch {
	case length < 0:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case r.body != nil || r.method == "POST" || r.method == "PUT":
		w.WriteString("Content-Length: " + strconv.FormatInt(length, 10) + "\r\n")
	}
	w.WriteString("\r\n")
}

// writeBody writes the body, chunked when its length is not known.
func (r *request) writeBody(w *bufio.Writer, length int64) error {
	if r.body == nil {
		return w.Flush()
	}
	if length >= 0 {
		if _, err := io.Copy(w, r.body); err != nil {
			return err
		}
		return w.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.body.Read(buf)
		if n > 0 {
			w.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n")
			w.Write(buf[:n])
			w.WriteString("\r\n")
			// Each piece goes out as it is read: a stream's reader on the
			// daemon's side (an import's progress) sees it now.
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			w.WriteString("0\r\n\r\n")
			return w.Flush()
		}
		if err != nil {
			return err
		}
	}
}

// errNoAnswer: the connection ended before any byte of an answer (an idle
// connection the daemon had closed).
var errNoAnswer = errors.New("connection closed before an answer")

// readHead reads an answer's status line and header fields, skipping
// informational answers other than 101.
func readHead(br *bufio.Reader) (*Response, error) {
	tp := textproto.NewReader(br)
	for first := true; ; first = false {
		line, err := tp.ReadLine()
		if err != nil {
			if first && errors.Is(err, io.EOF) {
				return nil, errNoAnswer
			}
			return nil, err
		}
		proto, status, _ := strings.Cut(line, " ")
		code, _, _ := strings.Cut(status, " ")
		n, err := strconv.Atoi(code)
		if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 || err != nil {
			return nil, fmt.Errorf("malformed HTTP status line %q", line)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return nil, fmt.Errorf("malformed HTTP header: %w", err)
		}
		if n >= 100 && n < 200 && n != 101 {
			continue
		}
		return &Response{StatusCode: n, Status: status, Header: h}, nil
	}
}

// checkTarget refuses a request target that would break the request line
// (the client escapes ids and names; this is the last guard).
func checkTarget(target string) error {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("invalid request path %q", target)
		}
	}
	return nil
}

// roundTrip sends r on a connection of t and returns the answer once its
// header is read. A reused connection that the daemon had closed is
// replaced once, when the body can be sent again.
func (t *transport) roundTrip(ctx context.Context, r *request) (*Response, error) {
	if err := checkTarget(r.target); err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		cn, reused, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, cn, r)
		if err != nil && reused && try == 0 && errors.Is(err, errNoAnswer) && r.replayable() && ctx.Err() == nil {
			if s, ok := r.body.(io.Seeker); ok {
				s.Seek(0, io.SeekStart)
			}
			continue
		}
		return resp, err
	}
}

// exchange writes r on cn and reads the answer's head; the body it returns
// gives cn back to t once read to its end.
func (t *transport) exchange(ctx context.Context, cn *conn, r *request) (*Response, error) {
	// A cancelled context ends the exchange and any read of the body.
	stop := context.AfterFunc(ctx, func() { cn.Close() })
	fail := func(err error) (*Response, error) {
		stop()
		cn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	length := r.length()
	w := bufio.NewWriter(cn)
	r.writeHead(w, length)
	var wrote chan error
	if length < 0 {
		// A stream is sent while the answer is awaited: the daemon may
		// answer (an error) before it has read all of it.
		wrote = make(chan error, 1)
		go func() { wrote <- r.writeBody(w, length) }()
	} else if err := r.writeBody(w, length); err != nil {
		// Nothing was answered: on a reused connection the daemon had
		// closed, the request may go again on a new one.
		return fail(fmt.Errorf("%w: %w", errNoAnswer, err))
	}
	resp, err := readHead(cn.br)
	if err != nil {
		if wrote != nil {
			cn.Close() // a writer blocked on a daemon that reads no more
			if werr := <-wrote; werr != nil && errors.Is(err, errNoAnswer) {
				err = werr
			}
		}
		return fail(err)
	}
	f, err := framed(r.method, resp, cn.br)
	if err != nil {
		return fail(err)
	}
	b := &body{t: t, cn: cn, ctx: ctx, stop: stop, r: f.r, remaining: f.remaining, reusable: wrote == nil && !f.last}
	if strings.EqualFold(resp.Header.Get("Connection"), "close") {
		b.reusable = false
	}
	resp.Body = b
	return resp, nil
}

// framing is how an answer's body is delimited on its connection.
type framing struct {
	r         io.Reader
	remaining int64 // of a Content-Length body; -1 otherwise
	last      bool  // nothing of HTTP follows it on the connection
}

// framed finds resp's body on br: none (HEAD, 101, 204, 304), chunked, its
// Content-Length's worth, or the rest of the connection.
func framed(method string, resp *Response, br *bufio.Reader) (framing, error) {
	switch {
	case method == "HEAD" || resp.StatusCode == 204 || resp.StatusCode == 304 || resp.StatusCode == 101:
		// After a 101 the connection speaks another protocol.
		return framing{r: bytes.NewReader(nil), remaining: 0, last: resp.StatusCode == 101}, nil
	case strings.EqualFold(resp.Header.Get("Transfer-Encoding"), "chunked"):
		return framing{r: &chunkedReader{br: br}, remaining: -1}, nil
	case resp.Header.Get("Content-Length") != "":
		n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return framing{}, fmt.Errorf("bad Content-Length %q", resp.Header.Get("Content-Length"))
		}
		return framing{r: io.LimitReader(br, n), remaining: n}, nil
	}
	return framing{r: br, remaining: -1, last: true}, nil
}

// body is an answer's body; at its end (or Close) the connection goes back
// to the transport when nothing of the exchange is left on it.
type body struct {
	t         *transport
	cn        *conn
	ctx       context.Context
	stop      func() bool
	r         io.Reader
	reusable  bool
	remaining int64 // of a Content-Length body; -1 otherwise
	done      bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if b.remaining >= 0 {
		b.remaining -= int64(n)
	}
	if errors.Is(err, io.EOF) {
		if b.remaining > 0 {
			b.release(false)
			return n, io.ErrUnexpectedEOF
		}
		b.release(true)
		return n, io.EOF
	}
	if err != nil {
		b.release(false)
		if b.ctx.Err() != nil {
			return n, b.ctx.Err()
		}
	}
	return n, err
}

// Close gives the connection back when at most drainLimit of the body was
// left unread, else closes it.
func (b *body) Close() error {
	if b.done {
		return nil
	}
	if b.reusable && b.remaining >= 0 && b.remaining <= drainLimit {
		_, _ = io.Copy(io.Discard, b)
	}
	b.release(false)
	return nil
}

func (b *body) release(atEnd bool) {
	if b.done {
		return
	}
	b.done = true
	if b.stop() && atEnd && b.reusable {
		b.t.put(b.cn)
		return
	}
	b.cn.Close()
}

// chunkedReader reads a chunked body (RFC 9112 7.1), trailers dropped.
type chunkedReader struct {
	br   *bufio.Reader
	left int64 // of the current chunk
	end  bool
	err  error
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		if c.end {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
		if c.end {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		err = c.crlf()
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return n, err
}

// next reads a chunk's size line; size 0 ends the body after the trailer.
func (c *chunkedReader) next() error {
	line, err := c.line()
	if err != nil {
		return err
	}
	size, _, _ := strings.Cut(line, ";")
	n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("malformed chunk size %q", line)
	}
	if n > 0 {
		c.left = n
		return nil
	}
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if l == "" {
			c.end = true
			return nil
		}
	}
}

func (c *chunkedReader) crlf() error {
	l, err := c.line()
	if err == nil && l != "" {
		err = fmt.Errorf("malformed chunk end %q", l)
	}
	return err
}

// line reads one line without its CRLF, at most 4 kB.
func (c *chunkedReader) line() (string, error) {
	l, err := c.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(l) > 4096 {
		return "", errors.New("chunk line too long")
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(string(l), "\r\n"), nil
}
