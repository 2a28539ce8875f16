package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"

	"github.com/shoal-project/shoal/containerd/shim"
)

// attachReq is a client's attach: output goes to out as stdcopy frames, and
// stdin (if not nil) to the container.
type attachReq struct {
	ctx   context.Context // the client's: its end closes the connection
	stdin io.Reader
	out   io.Writer  // receives stdcopy frames
	done  chan error // one value: how the attach ended
}

func (a *attachReq) fail(err error) { a.done <- err }

// Attach streams the container's output to out as stdcopy frames
// ([stream,0,0,0,len] + data) and, when stdin is not nil, stdin to the
// container, until the container's output ends. Attached to a created
// container, it waits for the start and misses nothing of the output.
func (e *Engine) Attach(ctx context.Context, idOrName string, stdin io.Reader, out io.Writer) error {
	return e.AttachRegistered(ctx, idOrName, stdin, out, nil)
}

// AttachRegistered is Attach with a callback run once the attach is
// registered: a client that starts the container after that (docker's run:
// attach, then start) misses none of its output.
func (e *Engine) AttachRegistered(ctx context.Context, idOrName string, stdin io.Reader, out io.Writer, registered func()) error {
	a := &attachReq{ctx: ctx, stdin: stdin, out: out, done: make(chan error, 1)}
	e.mu.Lock()
	r, err := e.lookupLocked(idOrName)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	running := r.c.State.Running
	id := r.c.ID
	if !running {
		r.pending = append(r.pending, a)
	}
	e.mu.Unlock()
	if registered != nil {
		registered()
	}
	if running {
		go e.pumpAttach(id, a)
	}
	select {
	case err := <-a.done:
		return err
	case <-ctx.Done():
		e.mu.Lock()
		for i, p := range r.pending {
			if p == a {
				r.pending = append(r.pending[:i], r.pending[i+1:]...)
				break
			}
		}
		e.mu.Unlock()
		return ctx.Err()
	}
}

// pumpAttach connects a to the shim of a running container and copies
// until the output ends.
func (e *Engine) pumpAttach(id string, a *attachReq) {
	conn, err := shim.Dial(e.shimDir(id))
	if err != nil {
		a.fail(fmt.Errorf("attach %s: %w", id[:12], err))
		return
	}
	if err := json.NewEncoder(conn).Encode(shim.Request{Attach: true, Stdin: a.stdin != nil}); err != nil {
		conn.Close()
		a.fail(err)
		return
	}
	e.pumpConn(a, conn)
}

// pumpConn copies between a and conn, a connection to the container's shim
// on which the attach has been requested, until the output ends.
func (e *Engine) pumpConn(a *attachReq, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(a.ctx, func() { conn.Close() })
	defer stop()
	// The shim's empty first frame says the attach is registered. EOF
	// instead: the output has already ended.
	var ack [8]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		a.done <- nil
		return
	}
	if a.stdin != nil {
		go func() {
			_, _ = io.Copy(conn, a.stdin)
			if uc, ok := conn.(*net.UnixConn); ok {
				_ = uc.CloseWrite()
			}
		}()
	}
	_, err := io.Copy(a.out, conn)
	a.done <- err
}

// Resize sets the window size of a running Tty container's console, which
// its shim holds.
func (e *Engine) Resize(idOrName string, height, width uint16) error {
	c, err := e.Get(idOrName)
	if err != nil {
		return err
	}
	switch {
	case !c.Config.Tty:
		return fmt.Errorf("%w: container %s has no terminal (-t)", ErrConflict, c.ID[:12])
	case !c.State.Running:
		return fmt.Errorf("%w: Container %s is not running", ErrConflict, c.ID)
	case height == 0 || width == 0:
		return fmt.Errorf("%w: terminal size %dx%d: height and width must be positive", ErrInvalidArgument, height, width)
	}
	if err := shim.ResizeConsole(e.shimDir(c.ID), height, width); err != nil {
		return fmt.Errorf("resize %s: %w", c.ID[:12], err)
	}
	return nil
}
