package daemon

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/volume"

	shoalevents "github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/containerd/volumes"
)

// Volumes: the Engine API's /volumes over the local driver, and the
// container side (named and anonymous volumes, --mount, --tmpfs,
// --volumes-from) of a create.

func (d *Daemon) volumeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /volumes", d.volumeList)
	mux.HandleFunc("POST /volumes/create", d.volumeCreate)
	mux.HandleFunc("POST /volumes/prune", d.volumePrune)
	mux.HandleFunc("GET /volumes/{name}", d.volumeInspect)
	mux.HandleFunc("DELETE /volumes/{name}", d.volumeRemove)
}

// volumeError gives the volume store's errors their API statuses.
func volumeError(err error) error {
	switch {
	case errors.Is(err, volumes.ErrNotFound):
		return withStatus(http.StatusNotFound, err)
	case errors.Is(err, volumes.ErrInUse):
		return withStatus(http.StatusConflict, err)
	case errors.Is(err, volumes.ErrInvalid):
		return withStatus(http.StatusBadRequest, err)
	}
	return err
}

func volumeView(v volumes.Volume) volume.Volume {
	labels, opts := v.Labels, v.Options
	if labels == nil {
		labels = map[string]string{}
	}
	if opts == nil {
		opts = map[string]string{}
	}
	return volume.Volume{Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Labels: labels,
		Options: opts, Scope: "local", CreatedAt: v.CreatedAt.Format("2006-01-02T15:04:05Z07:00")}
}

func (d *Daemon) publishVolume(action, name string, attrs map[string]string) {
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["driver"] = volumes.DriverLocal
	d.publish(shoalevents.TypeVolume, action, name, attrs)
}

func (d *Daemon) volumeList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"), "dangling", "name", "label", "driver")
	if err != nil {
		writeError(w, err)
		return
	}
	for _, v := range f["dangling"] {
		if _, err := strconv.ParseBool(v); err != nil {
			writeError(w, badRequest("invalid filter 'dangling=%s'", v))
			return
		}
	}
	out := volume.ListResponse{Volumes: []volume.Volume{}, Warnings: []string{}}
	for _, v := range d.volumes.List() {
		if f.matchVolume(v) {
			out.Volumes = append(out.Volumes, volumeView(v))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (f filters) matchVolume(v volumes.Volume) bool {
	return f.any("name", func(s string) bool { return strings.Contains(v.Name, s) }) &&
		f.any("driver", func(s string) bool { return s == v.Driver }) &&
		f.any("dangling", func(s string) bool { b, _ := strconv.ParseBool(s); return b == (len(v.Users) == 0) }) &&
		f.labels(v.Labels)
}

func (d *Daemon) volumeCreate(w http.ResponseWriter, r *http.Request) {
	var req volume.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.ClusterVolumeSpec != nil {
		writeError(w, badRequest("cluster volumes are not supported"))
		return
	}
	v, created, err := d.volumes.Create(req.Name, req.Driver, req.Labels, req.DriverOpts)
	if err != nil {
		writeError(w, volumeError(err))
		return
	}
	if created {
		d.publishVolume("create", v.Name, nil)
	}
	writeJSON(w, http.StatusCreated, volumeView(v))
}

func (d *Daemon) volumeInspect(w http.ResponseWriter, r *http.Request) {
	v, err := d.volumes.Get(r.PathValue("name"))
	if err != nil {
		writeError(w, volumeError(err))
		return
	}
	writeJSON(w, http.StatusOK, volumeView(v))
}

func (d *Daemon) volumeRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.removeVolume(r.PathValue("name"), boolParam(r, "force")); err != nil {
		writeError(w, volumeError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) removeVolume(name string, force bool) error {
	if _, err := d.volumes.Get(name); err != nil {
		if force && errors.Is(err, volumes.ErrNotFound) {
			return nil
		}
		return err
	}
	if err := d.volumes.Remove(name, force, ""); err != nil {
		return err
	}
	d.publishVolume("destroy", name, nil)
	return nil
}

func (d *Daemon) volumePrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"), "label", "label!", "all")
	if err != nil {
		writeError(w, err)
		return
	}
	all := false
	for _, v := range f["all"] {
		if all, err = strconv.ParseBool(v); err != nil {
			writeError(w, badRequest("invalid filter 'all=%s'", v))
			return
		}
	}
	report := volume.PruneReport{VolumesDeleted: []string{}}
	for _, v := range d.volumes.List() {
		// As API >= 1.42: only anonymous volumes unless all=true.
		if len(v.Users) > 0 || (!all && !v.Anonymous()) || !f.labels(v.Labels) || !f.notLabels(v.Labels) {
			continue
		}
		size := dirSize(v.Mountpoint)
		if err := d.removeVolume(v.Name, false); err != nil {
			slog.Warn("volume prune", "volume", v.Name, "err", err)
			continue
		}
		report.VolumesDeleted = append(report.VolumesDeleted, v.Name)
		report.SpaceReclaimed += uint64(size)
	}
	d.publish(shoalevents.TypeVolume, "prune", "", map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)})
	writeJSON(w, http.StatusOK, report)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// volumeUsage is system df's volume part: sizes and reference counts.
func (d *Daemon) volumeUsage() *volume.DiskUsage {
	du := &volume.DiskUsage{Items: []volume.Volume{}}
	if d.volumes == nil {
		return du
	}
	for _, v := range d.volumes.List() {
		vv := volumeView(v)
		size := dirSize(v.Mountpoint)
		vv.UsageData = &volume.UsageData{Size: size, RefCount: int64(len(v.Users))}
		du.Items = append(du.Items, vv)
		du.TotalCount++
		du.TotalSize += size
		if len(v.Users) > 0 {
			du.ActiveCount++
		} else {
			du.Reclaimable += size
		}
	}
	return du
}
