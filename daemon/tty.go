package daemon

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/moby/term"
)

// Terminals: resizing a container's or an exec's console, and the detach
// keys that end an attach to a TTY while the container runs on.

// defaultDetachKeys are dockerd's: ctrl-p, ctrl-q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// detachKeys parses a detach sequence as docker does ("ctrl-p,ctrl-q",
// "a,ctrl-x"); empty is the default.
func detachKeys(s string) ([]byte, error) {
	if s == "" {
		s = defaultDetachKeys
	}
	keys, err := term.ToBytes(s)
	if err != nil {
		return nil, badRequest("Invalid detach keys (%s) provided: %v", s, err)
	}
	return keys, nil
}

// detachOn passes r through until the detach keys come, which it keeps
// back: then it calls detach and ends as the client's input would.
func detachOn(r io.Reader, keys []byte, detach func()) io.Reader {
	return &detacher{r: term.NewEscapeProxy(r, keys), detach: detach}
}

type detacher struct {
	r      io.Reader
	detach func()
}

func (d *detacher) Read(b []byte) (int, error) {
	n, err := d.r.Read(b)
	var esc term.EscapeError
	if errors.As(err, &esc) {
		d.detach()
		return n, io.EOF
	}
	return n, err
}

// sizeParams reads a resize's h and w query parameters.
func sizeParams(r *http.Request) (uint16, uint16, error) {
	var v [2]uint16
	for i, name := range []string{"h", "w"} {
		n, err := strconv.ParseUint(r.URL.Query().Get(name), 10, 16)
		if err != nil || n == 0 {
			return 0, 0, badRequest("invalid terminal size: %s=%q must be a number from 1 to %d", name, r.URL.Query().Get(name), math.MaxUint16)
		}
		v[i] = uint16(n)
	}
	return v[0], v[1], nil
}

// consoleSize checks a create request's initial console size [height,
// width]; nil and [0, 0] mean the default.
func consoleSize(s *[2]uint) ([2]uint16, error) {
	if s == nil || s[0] == 0 && s[1] == 0 {
		return [2]uint16{}, nil
	}
	if s[0] == 0 || s[1] == 0 || s[0] > math.MaxUint16 || s[1] > math.MaxUint16 {
		return [2]uint16{}, badRequest("invalid ConsoleSize %v: height and width must be from 1 to %d", *s, math.MaxUint16)
	}
	return [2]uint16{uint16(s[0]), uint16(s[1])}, nil
}

// containerResize sets the size of a running TTY container's console.
func (d *Daemon) containerResize(w http.ResponseWriter, r *http.Request) {
	h, wd, err := sizeParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.containers.Resize(r.PathValue("id"), h, wd); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// execResize sets the size of a running TTY exec's console.
func (d *Daemon) execResize(w http.ResponseWriter, r *http.Request) {
	h, wd, err := sizeParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.containers.ExecResize(r.PathValue("id"), h, wd); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
