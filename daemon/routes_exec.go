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
// after reading it misses none of the output.
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
	h, err := hijack(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer h.conn.Close()
	h.raw = c.Config.Tty
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
	out := &streamFilter{w: h.conn, stdout: boolParam(r, "stdout"), stderr: boolParam(r, "stderr"), raw: c.Config.Tty}
	answered := false
	err = d.containers.AttachRegistered(ctx, c.ID, stdin, out, func() {
		answered = true
		if err := h.ready(); err != nil {
			h.conn.Close()
			return
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
