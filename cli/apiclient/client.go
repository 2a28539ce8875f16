// Package apiclient is the CLI's client of the daemon's REST API (the
// Docker Engine API, on a unix socket): one method per endpoint the CLI
// uses, with the request and response shapes of github.com/moby/moby/api.
//
// It replaces github.com/moby/moby/client in the CLI for the CLI's start:
// that library's package initialisation (the regular expressions of
// distribution/reference, OpenTelemetry) and size cost about 5 ms of CPU
// and wall at every command, a third of `shoal version`, and every
// `shoal run` pays it before its first request (docs/engine.md).
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
)

// APIVersion is the Engine API version the client sends: the daemon's
// (a daemon test holds them equal), so no request waits for a /_ping to
// negotiate it. DOCKER_API_VERSION overrides it, as for the docker CLI.
const APIVersion = "1.56"

// dummyHost is the Host header of requests over a unix socket.
const dummyHost = "api.shoal"

// Client sends requests to one daemon. It holds idle connections: Close
// releases them.
type Client struct {
	host    string // as given: unix:///run/shoal/shoal.sock
	network string // "unix" or "tcp"
	addr    string
	version string
	tr      *transport
}

// New returns a client for host (unix://PATH or tcp://HOST:PORT). It does
// not connect: the first request does.
func New(host string) (*Client, error) {
	network, addr, ok := strings.Cut(host, "://")
	if !ok {
		return nil, fmt.Errorf("invalid daemon host %q: no scheme (unix://PATH)", host)
	}
	switch network {
	case "unix":
		if addr == "" {
			return nil, fmt.Errorf("invalid daemon host %q: no socket path", host)
		}
	case "tcp":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("invalid daemon host %q: %w", host, err)
		}
	default:
		return nil, fmt.Errorf("invalid daemon host %q: unsupported scheme %s (unix or tcp)", host, network)
	}
	version := APIVersion
	if v := os.Getenv("DOCKER_API_VERSION"); v != "" {
		version = strings.TrimPrefix(v, "v")
	}
	c := &Client{host: host, network: network, addr: addr, version: version}
	c.tr = &transport{dial: c.dial}
	return c, nil
}

// Version is the API version the client sends.
func (c *Client) Version() string { return c.version }

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.tr.closeIdle()
	return nil
}

// dial opens a connection to the daemon's socket.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return nil, &ConnectionError{Host: c.host, Err: err}
	}
	return conn, nil
}

// ConnectionError is a failure to reach the daemon.
type ConnectionError struct {
	Host string
	Err  error
}

func (e *ConnectionError) Error() string {
	return fmt.Sprintf("cannot connect to the daemon at %s: %v", e.Host, e.Err)
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// IsConnectionFailed reports whether err is a failure to reach the daemon.
func IsConnectionFailed(err error) bool {
	var ce *ConnectionError
	return errors.As(err, &ce)
}

// Error is an error answer of the daemon. Its text is docker's: "Error
// response from daemon: MESSAGE".
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string { return "Error response from daemon: " + e.Message }

// IsNotFound reports whether err is the daemon's 404.
func IsNotFound(err error) bool { return statusOf(err) == 404 }

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// path is an API path with its version prefix and query.
func (c *Client) path(p string, query url.Values) string {
	s := "/v" + c.version + p
	if len(query) > 0 {
		s += "?" + query.Encode()
	}
	return s
}

// Request is one API request: Body is sent as is when it is an io.Reader,
// else encoded as JSON (nil: no body).
type Request struct {
	Method string
	Path   string // without the version prefix: /containers/json
	Query  url.Values
	Header Header
	Body   any
}

// Do sends r and returns the daemon's answer when it is a success (status
// below 400); an error answer is read and returned as *Error. The caller
// closes the response body.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	body, header, err := encodeBody(r.Body, r.Header)
	if err != nil {
		return nil, err
	}
	target := c.path(r.Path, r.Query)
	resp, err := c.tr.roundTrip(ctx, &request{method: r.Method, target: target, host: dummyHost, header: header, body: body})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ce *ConnectionError
		if errors.As(err, &ce) {
			return nil, ce
		}
		// As net/http's url.Error reads: Post "http://api.shoal/v1.56/...": EOF
		return nil, fmt.Errorf("error during connect: %s %q: %w", r.Method[:1]+strings.ToLower(r.Method[1:]), "http://"+dummyHost+target, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func encodeBody(b any, h Header) (io.Reader, Header, error) {
	switch b := b.(type) {
	case nil:
		return nil, h, nil
	case io.Reader:
		return b, h, nil
	}
	data, ok := b.(json.RawMessage) // encoded already
	if !ok {
		var err error
		if data, err = json.Marshal(b); err != nil {
			return nil, nil, fmt.Errorf("encode request: %w", err)
		}
	}
	h = cloneHeader(h)
	h.Set("Content-Type", "application/json")
	return bytes.NewReader(data), h, nil
}

// cloneHeader is a copy of h that the caller may change (never nil).
func cloneHeader(h Header) Header {
	c := make(Header, len(h)+1)
	for k, v := range h {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// readError turns an error answer into *Error: the JSON {"message": ...}
// the daemon sends, else the body's text, else the status.
func readError(resp *Response) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read error answer (%s): %w", resp.Status, err)
	}
	msg := strings.TrimSpace(string(data))
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) == nil {
			msg = strings.TrimSpace(e.Message)
		}
	}
	if msg == "" {
		_, reason, _ := strings.Cut(resp.Status, " ")
		msg = fmt.Sprintf("API returned a %d (%s) but provided no error-message", resp.StatusCode, reason)
	}
	return &Error{StatusCode: resp.StatusCode, Message: msg}
}

// call sends r and decodes the answer's JSON into out (nil: the answer is
// discarded).
func (c *Client) call(ctx context.Context, r Request, out any) error {
	resp, err := c.Do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", r.Method, r.Path, err)
	}
	return nil
}

// getWithRaw is get that also returns the answer's JSON as the daemon
// sent it (inspect prints that, and --format reads fields the API types
// lack).
func (c *Client) getWithRaw(ctx context.Context, p string, q url.Values, out any) ([]byte, error) {
	resp, err := c.Do(ctx, Request{Method: "GET", Path: p, Query: q})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer of GET %s: %w", p, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode answer of GET %s: %w", p, err)
	}
	return raw, nil
}

// idPath is the path of one object, collection + "/" + id, refusing an
// empty id before any request, in the moby client's words (an empty id
// would name the collection itself).
func idPath(kind, collection, id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", fmt.Errorf("invalid %s name or ID: value is empty", kind)
	}
	return collection + "/" + esc(id), nil
}

// get, post and del are call's common cases.
func (c *Client) get(ctx context.Context, p string, q url.Values, out any) error {
	return c.call(ctx, Request{Method: "GET", Path: p, Query: q}, out)
}

func (c *Client) post(ctx context.Context, p string, q url.Values, in, out any) error {
	return c.call(ctx, Request{Method: "POST", Path: p, Query: q, Body: in}, out)
}

func (c *Client) del(ctx context.Context, p string, q url.Values, out any) error {
	return c.call(ctx, Request{Method: "DELETE", Path: p, Query: q}, out)
}

// stream sends r and returns the answer's body for the caller to read and
// close.
func (c *Client) stream(ctx context.Context, r Request) (io.ReadCloser, error) {
	resp, err := c.Do(ctx, r)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// esc escapes an id or a name for a request path, keeping "/" and ":" (an
// image reference's are part of the path, as the Engine API routes them).
func esc(s string) string { return (&url.URL{Path: s}).EscapedPath() }

// Filters are the "filters" query parameter of list endpoints: each key's
// values, sent as the JSON map of sets the Engine API takes.
type Filters map[string][]string

// Add appends values to key and returns f.
func (f Filters) Add(key string, values ...string) Filters {
	f[key] = append(f[key], values...)
	return f
}

// Clone is a copy of f that Add does not share.
func (f Filters) Clone() Filters {
	g := make(Filters, len(f))
	for k, v := range f {
		g[k] = append([]string(nil), v...)
	}
	return g
}

// encode is the query value: {"key":{"value":true}}.
func (f Filters) encode() string {
	m := make(map[string]map[string]bool, len(f))
	for k, vs := range f {
		set := make(map[string]bool, len(vs))
		for _, v := range vs {
			set[v] = true
		}
		m[k] = set
	}
	b, _ := json.Marshal(m) // a map of strings always encodes
	return string(b)
}

// setFilters adds f to q when it has any.
func setFilters(q url.Values, f Filters) {
	if len(f) > 0 {
		q.Set("filters", f.encode())
	}
}
