package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/logs"
)

func (d *Daemon) containerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /containers/create", d.containerCreate)
	mux.HandleFunc("GET /containers/json", d.containerList)
	mux.HandleFunc("GET /containers/{id}/json", d.containerInspect)
	mux.HandleFunc("POST /containers/{id}/start", d.containerStart)
	mux.HandleFunc("POST /containers/{id}/stop", d.containerStop)
	mux.HandleFunc("POST /containers/{id}/restart", d.containerRestart)
	mux.HandleFunc("POST /containers/{id}/kill", d.containerKill)
	mux.HandleFunc("POST /containers/{id}/wait", d.containerWait)
	mux.HandleFunc("DELETE /containers/{id}", d.containerRemove)
	mux.HandleFunc("GET /containers/{id}/logs", d.containerLogs)
	mux.HandleFunc("POST /containers/{id}/attach", d.containerAttach)
	mux.HandleFunc("POST /containers/{id}/exec", d.execCreate)
	mux.HandleFunc("POST /exec/{id}/start", d.execStart)
	mux.HandleFunc("GET /exec/{id}/json", d.execInspect)
	mux.HandleFunc("GET /containers/{id}/top", d.containerTop)
	mux.HandleFunc("HEAD /containers/{id}/archive", d.archiveStat)
	mux.HandleFunc("GET /containers/{id}/archive", d.archiveGet)
	mux.HandleFunc("PUT /containers/{id}/archive", d.archivePut)
	mux.HandleFunc("POST /commit", d.commit)
}

func (d *Daemon) containerCreate(w http.ResponseWriter, r *http.Request) {
	var req container.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Config == nil || req.Config.Image == "" {
		writeError(w, badRequest("no image specified"))
		return
	}
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	cfg := containers.Config{
		Image: req.Config.Image, Cmd: req.Config.Cmd, Entrypoint: req.Config.Entrypoint, Env: req.Config.Env,
		WorkingDir: req.Config.WorkingDir, User: req.Config.User, Hostname: req.Config.Hostname,
		Labels: req.Config.Labels, OpenStdin: req.Config.OpenStdin, StdinOnce: req.Config.StdinOnce,
		StopSignal: req.Config.StopSignal, StopTimeout: req.Config.StopTimeout,
		Memory: hc.Memory, NanoCPUs: hc.NanoCPUs, CPUShares: hc.CPUShares, Binds: hc.Binds,
		AutoRemove: hc.AutoRemove, ReadonlyRootfs: hc.ReadonlyRootfs, NetworkMode: string(hc.NetworkMode),
	}
	if req.Config.Tty {
		writeError(w, badRequest("TTY containers (-t) are not supported yet"))
		return
	}
	if hc.PidsLimit != nil {
		cfg.PidsLimit = *hc.PidsLimit
	}
	if hc.Memory < 0 || hc.NanoCPUs < 0 {
		writeError(w, badRequest("invalid resources: negative memory or CPUs"))
		return
	}
	if hc.Memory > 0 && hc.Memory < 6*1024*1024 {
		writeError(w, badRequest("Minimum memory limit allowed is 6MB"))
		return
	}
	for _, o := range hc.SecurityOpt {
		switch o {
		case "no-new-privileges", "no-new-privileges:true", "no-new-privileges=true":
			cfg.NoNewPrivileges = true
		case "no-new-privileges:false", "no-new-privileges=false":
		default:
			writeError(w, badRequest("security option %q is not supported", o))
			return
		}
	}
	ports, err := portMappings(hc)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(ports) > 0 && cfg.NetworkMode != "" && cfg.NetworkMode != "bridge" && cfg.NetworkMode != "default" {
		writeError(w, badRequest("published ports need the bridge network"))
		return
	}
	cfg.RawConfig, _ = json.Marshal(req.Config)
	cfg.RawHostConfig, _ = json.Marshal(hc)
	c, err := d.engine.Create(r.Context(), r.URL.Query().Get("name"), cfg)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.connectNetwork(r.Context(), c, ports); err != nil {
		_ = d.engine.Remove(context.WithoutCancel(r.Context()), c.ID, true)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"Id": c.ID, "Warnings": []string{}})
}

func (d *Daemon) containerStart(w http.ResponseWriter, r *http.Request) {
	if err := d.engine.Start(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func timeoutParam(r *http.Request) (*int, error) {
	v := r.URL.Query().Get("t")
	if v == "" {
		v = r.URL.Query().Get("timeout")
	}
	if v == "" {
		return nil, nil
	}
	t, err := strconv.Atoi(v)
	if err != nil {
		return nil, badRequest("invalid timeout %q", v)
	}
	return &t, nil
}

func (d *Daemon) containerStop(w http.ResponseWriter, r *http.Request) {
	t, err := timeoutParam(r)
	if err == nil {
		err = d.engine.Stop(r.Context(), r.PathValue("id"), t)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerRestart(w http.ResponseWriter, r *http.Request) {
	t, err := timeoutParam(r)
	if err == nil {
		err = d.engine.Stop(r.Context(), r.PathValue("id"), t)
	}
	if err == nil || errors.Is(err, containers.ErrNotModified) {
		err = d.engine.Start(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerKill(w http.ResponseWriter, r *http.Request) {
	sig := r.URL.Query().Get("signal")
	if sig == "" {
		sig = "KILL"
	}
	s, err := containers.ParseSignal(sig)
	if err == nil {
		err = d.engine.Kill(r.PathValue("id"), s)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerWait(w http.ResponseWriter, r *http.Request) {
	cond := r.URL.Query().Get("condition")
	switch cond {
	case "", containers.WaitNotRunning, containers.WaitNextExit, containers.WaitRemoved:
	default:
		writeError(w, badRequest("invalid condition: %q", cond))
		return
	}
	flushed := false
	st, err := d.engine.Wait(r.Context(), r.PathValue("id"), cond, func() {
		// Headers go out once the wait is registered: the CLI starts the container then.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		flushed = true
	})
	if err != nil && !flushed {
		writeError(w, err)
		return
	}
	resp := map[string]any{"StatusCode": st.ExitCode}
	if err != nil {
		resp["Error"] = map[string]string{"Message": err.Error()}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (d *Daemon) containerRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.engine.Remove(r.Context(), r.PathValue("id"), boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stdout, stderr := boolParam(r, "stdout"), boolParam(r, "stderr")
	if !stdout && !stderr {
		writeError(w, badRequest("you must choose at least one stream"))
		return
	}
	opts := containers.LogsOptions{Tail: -1, Follow: boolParam(r, "follow")}
	if t := q.Get("tail"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			writeError(w, badRequest("invalid tail %q", t))
			return
		}
		opts.Tail = n
	}
	if s := q.Get("since"); s != "" && s != "0" {
		if sec, err := strconv.ParseFloat(s, 64); err == nil {
			opts.Since = time.Unix(0, int64(sec*1e9))
		}
	}
	if _, err := d.engine.Get(r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	timestamps := boolParam(r, "timestamps")
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	w.WriteHeader(http.StatusOK)
	fw := newFlushWriter(w)
	_ = d.engine.Logs(r.Context(), r.PathValue("id"), opts, func(e logs.Entry) error {
		stream := byte(1)
		if e.Stream == "stderr" {
			if !stderr {
				return nil
			}
			stream = 2
		} else if !stdout {
			return nil
		}
		line := e.Log
		if timestamps {
			line = e.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + line
		}
		return writeFrame(fw, stream, []byte(line))
	})
}

func (d *Daemon) containerAttach(w http.ResponseWriter, r *http.Request) {
	if _, err := d.engine.Get(r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	// The attach is registered before the 101 goes out: the client starts the
	// container as soon as it has the upgrade, and must miss none of its output.
	outR, outW := io.Pipe()
	var stdin io.Reader
	var stdinW *io.PipeWriter
	if boolParam(r, "stdin") {
		stdin, stdinW = io.Pipe()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	registered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		err := d.engine.AttachRegistered(ctx, r.PathValue("id"), stdin, outW, func() { close(registered) })
		outW.CloseWithError(err)
		done <- err
	}()
	select {
	case <-registered:
	case err := <-done:
		writeError(w, err)
		return
	}
	conn, in, err := hijack(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	if stdinW != nil {
		go func() {
			_, err := io.Copy(stdinW, in)
			stdinW.CloseWithError(err)
		}()
	}
	_, _ = io.Copy(conn, outR)
}

func (d *Daemon) containerTop(w http.ResponseWriter, r *http.Request) {
	rows, err := d.engine.Top(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	procs := [][]string{}
	for _, row := range rows {
		procs = append(procs, row)
	}
	writeJSON(w, http.StatusOK, map[string]any{"Titles": containers.TopTitles, "Processes": procs})
}

func (d *Daemon) archiveStat(w http.ResponseWriter, r *http.Request) {
	st, err := d.engine.StatPath(r.PathValue("id"), r.URL.Query().Get("path"))
	if err != nil {
		writeError(w, err)
		return
	}
	setPathStat(w, st)
	w.WriteHeader(http.StatusOK)
}

func setPathStat(w http.ResponseWriter, st containers.PathStat) {
	b, _ := json.Marshal(st)
	w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
}

func (d *Daemon) archiveGet(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	st, err := d.engine.StatPath(r.PathValue("id"), path)
	if err != nil {
		writeError(w, err)
		return
	}
	setPathStat(w, st)
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := d.engine.ArchivePath(r.Context(), r.PathValue("id"), path, w); err != nil {
		panic(http.ErrAbortHandler)
	}
}

func (d *Daemon) archivePut(w http.ResponseWriter, r *http.Request) {
	if err := d.engine.ExtractToDir(r.Context(), r.PathValue("id"), r.URL.Query().Get("path"), r.Body); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) commit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ref := q.Get("repo")
	if t := q.Get("tag"); ref != "" && t != "" {
		ref += ":" + t
	}
	img, err := d.engine.Commit(r.Context(), q.Get("container"), containers.CommitOptions{Ref: ref, Comment: q.Get("comment"), Author: q.Get("author")})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"Id": img.ID})
}

func (d *Daemon) execCreate(w http.ResponseWriter, r *http.Request) {
	var req container.ExecCreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Tty {
		writeError(w, badRequest("TTY exec (-t) is not supported yet"))
		return
	}
	id, err := d.engine.ExecCreate(r.PathValue("id"), containers.ExecConfig{
		Cmd: req.Cmd, Env: req.Env, WorkingDir: req.WorkingDir, User: req.User, AttachStdin: req.AttachStdin,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"Id": id})
}

func (d *Daemon) execStart(w http.ResponseWriter, r *http.Request) {
	var req container.ExecStartRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	st, err := d.engine.ExecInspect(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if req.Detach {
		go func() { _ = d.engine.ExecStart(context.Background(), st.ID, nil, discard{}) }()
		w.WriteHeader(http.StatusOK)
		return
	}
	conn, in, err := hijack(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	if err := d.engine.ExecStart(context.Background(), st.ID, in, conn); err != nil {
		_ = writeFrame(conn, 2, []byte(err.Error()+"\n"))
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func (d *Daemon) execInspect(w http.ResponseWriter, r *http.Request) {
	st, err := d.engine.ExecInspect(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ID": st.ID, "ContainerID": st.ContainerID, "Running": st.Running, "ExitCode": st.ExitCode, "Pid": st.Pid,
		"OpenStdin": st.Config.AttachStdin, "ProcessConfig": map[string]any{"entrypoint": first(st.Config.Cmd), "arguments": rest(st.Config.Cmd), "user": st.Config.User},
	})
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func rest(s []string) []string {
	if len(s) < 2 {
		return []string{}
	}
	return s[1:]
}

// writeFrame writes one stdcopy frame: [stream,0,0,0,len BE32] + data.
func writeFrame(w interface{ Write([]byte) (int, error) }, stream byte, b []byte) error {
	hdr := []byte{stream, 0, 0, 0, byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}
	if _, err := w.Write(append(hdr, b...)); err != nil {
		return err
	}
	return nil
}

// commandOf is ps's COMMAND: the path and args joined.
func commandOf(c containers.Container) string {
	return strings.TrimSpace(c.Path + " " + strings.Join(c.Args, " "))
}
