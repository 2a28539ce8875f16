package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/shoal-project/shoal/containerd/images"
)

func (d *Daemon) imageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /images/create", d.imageCreate)
	mux.HandleFunc("GET /images/json", d.imageList)
	mux.HandleFunc("GET /images/get", d.imageSave)
	mux.HandleFunc("POST /images/load", d.imageLoad)
	mux.HandleFunc("GET /images/{name...}", d.imageGetRoute)
	mux.HandleFunc("DELETE /images/{name...}", d.imageRemove)
	mux.HandleFunc("POST /images/{name...}", d.imagePostRoute)
}

// Image names contain slashes, so /images/{name}/json and friends are split here.
func splitImageRoute(path string) (name, action string) {
	for _, a := range []string{"/json", "/history", "/get", "/tag", "/push"} {
		if len(path) > len(a) && path[len(path)-len(a):] == a {
			return path[:len(path)-len(a)], a[1:]
		}
	}
	return path, ""
}

func (d *Daemon) imageGetRoute(w http.ResponseWriter, r *http.Request) {
	name, action := splitImageRoute(r.PathValue("name"))
	switch action {
	case "json":
		d.imageInspect(w, name)
	case "history":
		d.imageHistory(w, name)
	case "get":
		r.URL.RawQuery = "names=" + name
		d.imageSave(w, r)
	default:
		writeError(w, fmt.Errorf("%w: page not found", images.ErrNotFound))
	}
}

func (d *Daemon) imagePostRoute(w http.ResponseWriter, r *http.Request) {
	name, action := splitImageRoute(r.PathValue("name"))
	switch action {
	case "tag":
		d.imageTag(w, r, name)
	default:
		writeError(w, badRequest("pulling and pushing images is not supported yet"))
	}
}

// imageCreate is `import`: only fromSrc=- (the body) is supported; there is no registry pull yet.
func (d *Daemon) imageCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("fromSrc") != "-" {
		if q.Get("fromImage") != "" {
			writeError(w, fmt.Errorf("%w: %s (pulling from a registry is not supported yet: use shoal import or shoal load)", images.ErrNotFound, q.Get("fromImage")))
			return
		}
		writeError(w, badRequest("only fromSrc=- (import of a rootfs tar in the body) is supported"))
		return
	}
	ref := q.Get("repo")
	if tag := q.Get("tag"); ref != "" && tag != "" {
		ref += ":" + tag
	}
	img, err := d.images.Import(r.Context(), r.Body, ref, images.ImportOptions{Comment: q.Get("message")})
	if err != nil {
		writeError(w, fmt.Errorf("%w: import: %v", images.ErrInvalid, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": img.ID})
}

type imageSummary struct {
	ID          string            `json:"Id"`
	ParentID    string            `json:"ParentId"`
	RepoTags    []string          `json:"RepoTags"`
	RepoDigests []string          `json:"RepoDigests"`
	Created     int64             `json:"Created"`
	Size        int64             `json:"Size"`
	SharedSize  int64             `json:"SharedSize"`
	Labels      map[string]string `json:"Labels"`
	Containers  int64             `json:"Containers"`
}

func (d *Daemon) imageList(w http.ResponseWriter, r *http.Request) {
	list, err := d.images.List()
	if err != nil {
		writeError(w, err)
		return
	}
	out := []imageSummary{}
	for _, img := range list {
		tags := img.RepoTags
		if tags == nil {
			tags = []string{}
		}
		out = append(out, imageSummary{ID: img.ID, ParentID: img.Parent, RepoTags: tags, RepoDigests: []string{},
			Created: img.Created.Unix(), Size: img.Size, SharedSize: -1, Labels: img.Config.Config.Labels, Containers: -1})
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) imageInspect(w http.ResponseWriter, name string) {
	img, err := d.images.Get(name)
	if err != nil {
		writeError(w, err)
		return
	}
	layers := []string{}
	for _, l := range img.Config.RootFS.DiffIDs {
		layers = append(layers, l.String())
	}
	comment := ""
	if n := len(img.Config.History); n > 0 {
		comment = img.Config.History[n-1].Comment
	}
	arch := img.Config.Architecture
	if arch == "" {
		arch = runtime.GOARCH
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Id": img.ID, "RepoTags": nonNil(img.RepoTags), "RepoDigests": []string{}, "Parent": img.Parent,
		"Comment": comment, "Created": img.Created.Format(time.RFC3339Nano), "Author": img.Config.Author,
		"Config": img.Config.Config, "Architecture": arch, "Os": img.Config.OS, "Size": img.Size,
		"RootFS":   map[string]any{"Type": "layers", "Layers": layers},
		"Metadata": map[string]any{},
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (d *Daemon) imageHistory(w http.ResponseWriter, name string) {
	h, err := d.images.History(name)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []map[string]any{}
	for _, e := range h {
		out = append(out, map[string]any{"Id": e.ID, "Created": e.Created.Unix(), "CreatedBy": e.CreatedBy,
			"Tags": nonNil(e.Tags), "Size": e.Size, "Comment": e.Comment})
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) imageTag(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	dst := q.Get("repo")
	if t := q.Get("tag"); t != "" {
		dst += ":" + t
	}
	if err := d.images.Tag(name, dst); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (d *Daemon) imageRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	removed, err := d.images.Remove(name, boolParam(r, "force"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, removed)
}

func (d *Daemon) imageSave(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["names"]
	if len(names) == 0 {
		writeError(w, badRequest("no image names given"))
		return
	}
	for _, n := range names {
		if _, err := d.images.Get(n); err != nil {
			writeError(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if err := d.images.Save(r.Context(), w, names); err != nil {
		// Headers are gone: cut the stream so the client sees a broken tar.
		panic(http.ErrAbortHandler)
	}
}

func (d *Daemon) imageLoad(w http.ResponseWriter, r *http.Request) {
	refs, err := d.images.Load(r.Context(), r.Body)
	if err != nil {
		writeError(w, fmt.Errorf("%w: load: %v", images.ErrInvalid, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for _, ref := range refs {
		_ = enc.Encode(map[string]string{"stream": "Loaded image: " + ref + "\n"})
	}
}
