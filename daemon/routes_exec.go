package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/shim"
)

// The hijacked streams: attach to a container, exec in one.

func (d *Daemon) execRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /containers/{id}/exec", d.execCreate)
	mux.HandleFunc("POST /exec/{id}/start", d.execStart)
	mux.HandleFunc("GET /exec/{id}/json", d.execInspect)
	mux.HandleFunc("POST /exec/{id}/resize", d.execResize)
}

// containerAttach streams a container's output as stdcopy frames and the
// client's raw input to its stdin, until the output ends. The answer (101)
// goes out once the attach is registered: a client that starts the container
// after reading it misses none of the output. As dockerd's: logs=1 first
// replays what the container has logged, and only stream=1 attaches to
// the live streams (docker-py's attach(stream=False, logs=True) sends
// stream=0 and reads to the end: an attach there would never end for a
// container that has exited).
func (d *Daemon) containerAttach(w http.ResponseWriter, r *http.Request) {
	c, err := d.containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	keys, err := detachKeys(r.URL.Query().Get("detachKeys"))
	if err != nil {
		writeError(w, err)
		return
	}
	withLogs, stream := boolParam(r, "logs"), boolParam(r, "stream")
	if withLogs && c.Config.Log.Name() == logs.DriverNone {
		writeError(w, withStatus(http.StatusNotImplemented, fmt.Errorf("attach with logs: %w", logs.ErrNotReadable)))
		return
	}
	h, err := hijack(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer h.conn.Close()
	h.raw = c.Config.Tty
	stdout, stderr := boolParam(r, "stdout"), boolParam(r, "stderr")
	if !stream {
		if err := h.ready(); err != nil {
			return
		}
		if withLogs {
			d.replayLogs(d.ctx, c, h.conn, stdout, stderr)
		}
		d.publishContainer("attach", c, nil)
		return
	}
	ctx, detach := context.WithCancel(d.ctx)
	defer detach()
	var stdin io.Reader
	// Without an open stdin (-i) there is nothing to write to: the
	// input is ignored, as dockerd does.
	if boolParam(r, "stdin") && c.Config.OpenStdin {
		stdin = h.in
		if c.Config.Tty {
			// The detach keys end the attach; the container runs on.
			stdin = detachOn(stdin, keys, func() {
				d.publishContainer("detach", c, nil)
				detach()
			})
		}
	}
	var out io.Writer = &streamFilter{w: h.conn, stdout: stdout, stderr: stderr, raw: c.Config.Tty}
	var replayed chan struct{}
	if withLogs {
		// The live output waits until the replay is written: a container
		// started meanwhile must not cut into its frames.
		replayed = make(chan struct{})
		out = &heldWriter{w: out, until: replayed}
	}
	answered := false
	err = d.containers.AttachRegistered(ctx, c.ID, stdin, out, func() {
		answered = true
		if withLogs {
			defer close(replayed)
		}
		if err := h.ready(); err != nil {
			h.conn.Close()
			return
		}
		if withLogs {
			d.replayLogs(ctx, c, h.conn, stdout, stderr)
		}
		d.publishContainer("attach", c, nil)
	})
	switch {
	case err != nil && !answered:
		h.fail(err)
	case err != nil && ctx.Err() == nil:
		slog.Debug("attach ended", "container", c.ID, "err", err)
	}
}

// replayLogs writes what container c has logged so far on the streams asked
// for to w, as the logs endpoint does: stdcopy frames, or raw for a TTY.
// A read that fails ends the replay (dockerd logs it and goes on).
func (d *Daemon) replayLogs(ctx context.Context, c containers.Container, w io.Writer, stdout, stderr bool) {
	err := d.containers.Logs(ctx, c.ID, containers.LogsOptions{Tail: -1}, func(e logs.Entry) error {
		return writeLogEntry(w, e, stdout, stderr, c.Config.Tty, "")
	})
	if err != nil && ctx.Err() == nil {
		slog.Info("attach: replaying the logs failed", "container", c.ID, "err", err)
	}
}

// heldWriter passes writes on to w once until is closed.
type heldWriter struct {
	w     io.Writer
	until <-chan struct{}
}

func (h *heldWriter) Write(b []byte) (int, error) {
	<-h.until
	return h.w.Write(b)
}

func (d *Daemon) execCreate(w http.ResponseWriter, r *http.Request) {
	var req container.ExecCreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case len(req.Cmd) == 0:
		writeError(w, badRequest("No exec command specified"))
		return
	case req.Privileged:
		writeError(w, badRequest("privileged exec is not supported"))
		return
	}
	if _, err := detachKeys(req.DetachKeys); err != nil {
		writeError(w, err)
		return
	}
	size, err := consoleSize(req.ConsoleSize)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := d.containers.ExecCreate(r.PathValue("id"), containers.ExecConfig{
		Cmd: req.Cmd, Env: req.Env, WorkingDir: req.WorkingDir, User: req.User, AttachStdin: req.AttachStdin,
		Tty: req.Tty, ConsoleSize: size, DetachKeys: req.DetachKeys,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, common.IDResponse{ID: id})
}

func (d *Daemon) execStart(w http.ResponseWriter, r *http.Request) {
	var req container.ExecStartRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	st, err := d.containers.ExecInspect(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if st.Running || st.Pid != 0 {
		writeError(w, withStatus(http.StatusConflict, fmt.Errorf("Error: Exec command %s has already run", st.ID)))
		return
	}
	if req.Detach {
		go func() {
			if err := d.containers.ExecStart(d.ctx, st.ID, nil, io.Discard); err != nil {
				slog.Info("detached exec failed", "exec", st.ID, "err", err)
			}
		}()
		w.WriteHeader(http.StatusOK)
		return
	}
	h, err := hijack(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer h.conn.Close()
	// As dockerd, the start request's Tty says whether the stream is raw.
	h.raw = req.Tty
	if err := h.ready(); err != nil {
		return
	}
	var stdin io.Reader
	if st.Config.AttachStdin {
		stdin = h.in
		if st.Config.Tty {
			// Checked at create. Detaching drops the connection; the
			// process runs on, its output discarded.
			keys, _ := detachKeys(st.Config.DetachKeys)
			stdin = detachOn(stdin, keys, func() { h.conn.Close() })
		}
	}
	out := &streamFilter{w: h.conn, stdout: true, stderr: true, raw: req.Tty}
	if err := d.containers.ExecStart(d.ctx, st.ID, stdin, out); err != nil {
		// After the upgrade the error can only go into the stream, where
		// dockerd puts it too; the client reads the exit code from inspect.
		_ = shim.WriteFrame(h.conn, 1, []byte(messageOf(err)+"\r\n"))
	}
}

func (d *Daemon) execInspect(w http.ResponseWriter, r *http.Request) {
	st, err := d.containers.ExecInspect(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	resp := container.ExecInspectResponse{
		ID: st.ID, ContainerID: st.ContainerID, Running: st.Running, Pid: st.Pid,
		OpenStdin: st.Config.AttachStdin, OpenStdout: true, OpenStderr: true, CanRemove: false,
		ProcessConfig: &container.ExecProcessConfig{User: st.Config.User, Arguments: []string{}},
	}
	if len(st.Config.Cmd) > 0 {
		resp.ProcessConfig.Entrypoint = st.Config.Cmd[0]
		resp.ProcessConfig.Arguments = st.Config.Cmd[1:]
	}
	// No exit code while it runs or before it has been started, as dockerd.
	if !st.Running && (st.Pid != 0 || st.ExitCode != 0) {
		code := st.ExitCode
		resp.ExitCode = &code
	}
	writeJSON(w, http.StatusOK, resp)
}
