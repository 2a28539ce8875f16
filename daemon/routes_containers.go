package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/shim"
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
	mux.HandleFunc("GET /containers/{id}/top", d.containerTop)
	mux.HandleFunc("HEAD /containers/{id}/archive", d.archiveStat)
	mux.HandleFunc("GET /containers/{id}/archive", d.archiveGet)
	mux.HandleFunc("PUT /containers/{id}/archive", d.archivePut)
	mux.HandleFunc("GET /containers/{id}/export", d.containerExport)
	mux.HandleFunc("POST /containers/{id}/resize", d.containerResize)
	mux.HandleFunc("POST /containers/prune", d.containerPrune)
	mux.HandleFunc("POST /commit", d.commit)
}

// boolParam reads a boolean query parameter as dockerd does: "", "0",
// "no", "false" and "none", in any case, are false, anything else true.
func boolParam(r *http.Request, name string) bool {
	switch strings.ToLower(strings.TrimSpace(r.URL.Query().Get(name))) { // docker-py sends "False"
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}

func (d *Daemon) containerList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilters(q.Get("filters"), validContainerFilters...)
	if err == nil {
		err = checkContainerFilters(f)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	created, err := f.createdRange(func(ref string) (time.Time, error) {
		c, err := d.containers.Get(ref)
		return c.Created, err
	})
	if err != nil {
		writeError(w, err)
		return
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil {
			writeError(w, badRequest("invalid limit %q", s))
			return
		}
	}
	// A limit or a status filter looks at stopped containers too, as dockerd.
	all := boolParam(r, "all") || limit > 0 || len(f["status"]) > 0 || len(f["exited"]) > 0
	ancestors := imageAncestry(d.images, f["ancestor"])
	now := time.Now()
	out := []container.Summary{}
	for _, c := range d.containers.List(all) {
		if limit > 0 && len(out) == limit {
			break
		}
		if f.matchContainer(c, ancestors) && created.admits(c.Created) && f.matchMounts(d.mountPoints(c)) {
			s := d.summaryOf(c, now)
			var eps map[string]*network.EndpointSettings
			if s.NetworkSettings != nil {
				eps = s.NetworkSettings.Networks
			}
			if !f.matchNetworks(eps) {
				continue
			}
			if boolParam(r, "size") {
				// ps -s: dockerd computes it the same way, per request.
				if rw, rootfs, err := d.containers.Size(c.ID); err == nil {
					s.SizeRw, s.SizeRootFs = rw, rootfs
				}
			}
			out = append(out, s)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) containerInspect(w http.ResponseWriter, r *http.Request) {
	c, err := d.containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	out := d.inspectOf(c)
	if boolParam(r, "size") { // inspect --size
		if rw, rootfs, err := d.containers.Size(c.ID); err == nil {
			out.SizeRw, out.SizeRootFs = &rw, &rootfs
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) containerStart(w http.ResponseWriter, r *http.Request) {
	if err := d.startContainer(r.Context(), r.PathValue("id")); err != nil {
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
		return nil, badRequest("invalid timeout %q: not a number of seconds", v)
	}
	return &t, nil
}

func (d *Daemon) containerStop(w http.ResponseWriter, r *http.Request) {
	t, err := timeoutParam(r)
	var c containers.Container
	if err == nil {
		c, err = d.containers.Get(r.PathValue("id"))
	}
	if err == nil {
		err = d.containers.Stop(r.Context(), c.ID, t)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	d.settleNetwork(c.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerRestart(w http.ResponseWriter, r *http.Request) {
	t, err := timeoutParam(r)
	if err == nil {
		err = d.containers.Stop(r.Context(), r.PathValue("id"), t)
	}
	if err == nil || errors.Is(err, containers.ErrNotModified) {
		err = d.startContainer(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if c, err := d.containers.Get(r.PathValue("id")); err == nil {
		d.publishContainer("restart", c, nil)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerKill(w http.ResponseWriter, r *http.Request) {
	sig := r.URL.Query().Get("signal")
	if sig == "" {
		sig = "KILL"
	}
	s, err := containers.ParseSignal(sig)
	if err != nil {
		writeError(w, badRequest("invalid signal: %s", sig))
		return
	}
	if err := d.containers.Kill(r.PathValue("id"), s); err != nil {
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
	c, err := d.containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := d.streamContext(r)
	defer cancel()
	flushed := false
	st, err := d.containers.Wait(ctx, c.ID, cond, func() {
		// The headers go once the wait is registered: the CLI's run starts
		// the container only then, so that no exit is missed.
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
	if err == nil {
		d.settleNetwork(c.ID)
	}
	resp := container.WaitResponse{StatusCode: int64(st.ExitCode)}
	// Error says why the wait failed, not why the container did: a start
	// failure was already the start's answer, and clients print this one.
	if err != nil {
		resp.Error = &container.WaitExitError{Message: err.Error()}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (d *Daemon) containerRemove(w http.ResponseWriter, r *http.Request) {
	if boolParam(r, "link") {
		writeError(w, badRequest("links are not supported"))
		return
	}
	// rm -v: the anonymous volumes go after the container (whose removal
	// releases them).
	anonymous := d.anonymousVolumes(r.PathValue("id"), boolParam(r, "v"))
	if err := d.containers.Remove(r.Context(), r.PathValue("id"), boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	d.removeAnonymous(anonymous)
	w.WriteHeader(http.StatusNoContent)
}

// parseTime reads since/until: seconds since the epoch, with a fraction.
func parseTime(name, s string) (time.Time, error) {
	if s == "" || s == "0" {
		return time.Time{}, nil
	}
	sec, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, badRequest("invalid %s %q: want seconds since the epoch", name, s)
	}
	return time.Unix(0, int64(sec*1e9)), nil
}

// tailParam reads the logs' tail parameter: a count, or -1 for "all",
// empty or negative (every line), as dockerd.
func tailParam(t string) (int, error) {
	if t == "" || t == "all" {
		return -1, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, badRequest("invalid tail %q: want a number or all", t)
	}
	return max(n, -1), nil
}

func (d *Daemon) containerLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stdout, stderr := boolParam(r, "stdout"), boolParam(r, "stderr")
	if !stdout && !stderr {
		writeError(w, badRequest("Bad parameters: you must choose at least one stream"))
		return
	}
	tail, err := tailParam(q.Get("tail"))
	if err != nil {
		writeError(w, err)
		return
	}
	opts := containers.LogsOptions{Tail: tail, Follow: boolParam(r, "follow")}
	if opts.Since, err = parseTime("since", q.Get("since")); err != nil {
		writeError(w, err)
		return
	}
	if opts.Until, err = parseTime("until", q.Get("until")); err != nil {
		writeError(w, err)
		return
	}
	c, err := d.containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if c.Config.Log.Name() == logs.DriverNone {
		writeError(w, withStatus(http.StatusNotImplemented, logs.ErrNotReadable))
		return
	}
	details := ""
	if boolParam(r, "details") {
		// dockerd puts the attributes and a space before every line, also
		// when there are none.
		details = d.logDetails(c) + " "
	}
	timestamps := boolParam(r, "timestamps")
	// A TTY container's output is one stream, sent raw as dockerd does.
	tty := c.Config.Tty
	w.Header().Set("Content-Type", streamType(tty))
	w.WriteHeader(http.StatusOK)
	fw := newFlushWriter(w)
	fw.Flush()
	ctx, cancel := d.streamContext(r)
	defer cancel()
	_ = d.containers.Logs(ctx, c.ID, opts, func(e logs.Entry) error {
		prefix := details
		if timestamps {
			prefix = e.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + prefix
		}
		return writeLogEntry(fw, e, stdout, stderr, tty, prefix)
	})
}

// writeLogEntry writes log entry e with prefix before it to w if its
// stream is one asked for: a stdcopy frame, or raw for a TTY container.
func writeLogEntry(w io.Writer, e logs.Entry, stdout, stderr, tty bool, prefix string) error {
	stream := byte(1)
	if e.Stream == "stderr" {
		stream = 2
	}
	if stream == 1 && !stdout || stream == 2 && !stderr {
		return nil
	}
	line := prefix + e.Log
	if tty {
		_, err := io.WriteString(w, line)
		return err
	}
	return shim.WriteFrame(w, stream, []byte(line))
}

func (d *Daemon) containerTop(w http.ResponseWriter, r *http.Request) {
	top, err := d.containers.Top(r.PathValue("id"), r.URL.Query().Get("ps_args"))
	if err != nil {
		writeError(w, err)
		return
	}
	d.publishContainerAction(r.PathValue("id"), "top")
	writeJSON(w, http.StatusOK, container.TopResponse{Titles: top.Titles, Processes: top.Processes})
}

func (d *Daemon) commit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("container") == "" {
		writeError(w, badRequest("no container given: commit needs ?container=ID"))
		return
	}
	// The changes are checked before the container is paused and read.
	changes := q["changes"]
	if _, err := parseChanges(changes); err != nil {
		writeError(w, err)
		return
	}
	ref := q.Get("repo")
	if t := q.Get("tag"); ref != "" && t != "" {
		ref += ":" + t
	}
	// pause defaults to true, as dockerd's (BoolValueOrDefault): a running
	// container is frozen while its changes are read.
	pause := !q.Has("pause") || boolParam(r, "pause")
	img, err := d.containers.Commit(r.Context(), q.Get("container"), containers.CommitOptions{
		Ref: ref, Comment: q.Get("comment"), Author: q.Get("author"), NoPause: !pause,
		Change: func(cfg ocispec.ImageConfig) (ocispec.ImageConfig, error) { return applyChanges(cfg, changes) },
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if ref != "" {
		d.publishTag(ref) // dockerd's commit tags the image: a tag event first
	}
	if c, err := d.containers.Get(q.Get("container")); err == nil {
		d.publishContainer("commit", c, map[string]string{"comment": q.Get("comment"), "imageID": img.ID, "imageRef": ref})
	}
	writeJSON(w, http.StatusCreated, common.IDResponse{ID: img.ID})
}

// containerPrune removes the stopped containers (those the label, label!
// and until filters select, if given).
func (d *Daemon) containerPrune(w http.ResponseWriter, r *http.Request) {
	f, until, err := timeFilters(r, "label", "label!", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	report := container.PruneReport{ContainersDeleted: []string{}}
	for _, c := range d.containers.List(true) {
		if c.State.Running || !f.labels(c.Config.Labels) || !f.notLabels(c.Config.Labels) || !createdBefore(c.Created, until) {
			continue
		}
		// SpaceReclaimed counts the files each container changed or added,
		// as dockerd's (its size before the removal; none if unreadable).
		rw, _, serr := d.containers.Size(c.ID)
		if err := d.containers.Remove(r.Context(), c.ID, false); err != nil {
			if errors.Is(err, containers.ErrNotFound) || errors.Is(err, containers.ErrConflict) {
				continue // gone or started meanwhile
			}
			writeError(w, err)
			return
		}
		report.ContainersDeleted = append(report.ContainersDeleted, c.ID)
		if serr == nil && rw > 0 {
			report.SpaceReclaimed += uint64(rw)
		}
	}
	writeJSON(w, http.StatusOK, report)
}
