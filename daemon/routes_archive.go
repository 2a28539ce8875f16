package daemon

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal-project/shoal/containerd/containers"
)

// The archive routes of `cp`: stat, get and put a path of a container.

func pathParam(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", badRequest("path cannot be empty")
	}
	return p, nil
}

// setPathStat writes the X-Docker-Container-Path-Stat header: the
// base64 of the path's stat as JSON.
func setPathStat(w http.ResponseWriter, st containers.PathStat) {
	b, _ := json.Marshal(container.PathStat{Name: st.Name, Size: st.Size, Mode: st.Mode, Mtime: st.Mtime, LinkTarget: st.LinkTarget})
	w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
}

func (d *Daemon) archiveStat(w http.ResponseWriter, r *http.Request) {
	p, err := pathParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	st, err := d.containers.StatPath(r.PathValue("id"), p)
	if err != nil {
		// A HEAD answer has no body: the status says it all.
		w.WriteHeader(statusOf(err))
		return
	}
	setPathStat(w, st)
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) archiveGet(w http.ResponseWriter, r *http.Request) {
	p, err := pathParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	st, err := d.containers.StatPath(r.PathValue("id"), p)
	if err != nil {
		writeError(w, err)
		return
	}
	setPathStat(w, st)
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := d.containers.ArchivePath(r.Context(), r.PathValue("id"), p, w); err != nil {
		// The status is gone: cut the stream so the client sees a broken tar.
		panic(http.ErrAbortHandler)
	}
	d.publishContainerAction(r.PathValue("id"), "archive-path")
}

// publishContainerAction emits a container event of a call that read or
// changed container idOrName (cp, export, top), as dockerd logs them.
func (d *Daemon) publishContainerAction(idOrName, action string) {
	if c, err := d.containers.Get(idOrName); err == nil {
		d.publishContainer(action, c, nil)
	}
}

// containerExport is `export`: the container's whole filesystem as a tar,
// entries named relative to its root (what `import` takes back).
func (d *Daemon) containerExport(w http.ResponseWriter, r *http.Request) {
	if _, err := d.containers.StatPath(r.PathValue("id"), "/"); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := d.containers.ArchivePath(r.Context(), r.PathValue("id"), "/", w); err != nil {
		panic(http.ErrAbortHandler)
	}
	d.publishContainerAction(r.PathValue("id"), "export")
}

func (d *Daemon) archivePut(w http.ResponseWriter, r *http.Request) {
	p, err := pathParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.containers.PutArchive(r.Context(), r.PathValue("id"), p, r.Body); err != nil {
		writeError(w, err)
		return
	}
	d.publishContainerAction(r.PathValue("id"), "extract-to-dir")
	w.WriteHeader(http.StatusOK)
}
