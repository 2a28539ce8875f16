package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"

	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/containerd/images"
)

func (d *Daemon) imageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /images/create", d.imageCreate)
	mux.HandleFunc("GET /images/json", d.imageList)
	mux.HandleFunc("GET /images/get", d.imageSave)
	mux.HandleFunc("POST /images/load", d.imageLoad)
	mux.HandleFunc("POST /images/prune", d.imagePrune)
	mux.HandleFunc("POST /auth", d.auth)
	// Image names hold slashes (localhost:5000/team/app), so the routes
	// below take the rest of the path and split the action off its end.
	mux.HandleFunc("GET /images/{name...}", d.imageGetRoute)
	mux.HandleFunc("DELETE /images/{name...}", d.imageRemove)
	mux.HandleFunc("POST /images/{name...}", d.imagePostRoute)
}

// splitImageRoute splits "NAME/ACTION" for the actions of /images/{name}.
func splitImageRoute(path string) (name, action string) {
	for _, a := range []string{"json", "history", "get", "tag", "push"} {
		if n, ok := strings.CutSuffix(path, "/"+a); ok && n != "" {
			return n, a
		}
	}
	return path, ""
}

func (d *Daemon) imageGetRoute(w http.ResponseWriter, r *http.Request) {
	name, action := splitImageRoute(r.PathValue("name"))
	switch action {
	case "json":
		d.imageInspect(w, r, name)
	case "history":
		d.imageHistory(w, name)
	case "get":
		d.saveImages(w, r, []string{name})
	default:
		writeJSON(w, http.StatusNotFound, errorResponse{Message: "page not found"})
	}
}

func (d *Daemon) imagePostRoute(w http.ResponseWriter, r *http.Request) {
	name, action := splitImageRoute(r.PathValue("name"))
	switch action {
	case "tag":
		d.imageTag(w, r, name)
	case "push":
		d.imagePush(w, r, name)
	default:
		writeJSON(w, http.StatusNotFound, errorResponse{Message: "page not found"})
	}
}

// streamJSON starts a JSON progress stream (import, load, pull) and returns
// the function that writes one message of it.
func streamJSON(w http.ResponseWriter) func(jsonstream.Message) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fw := newFlushWriter(w)
	enc := json.NewEncoder(fw)
	return func(m jsonstream.Message) { _ = enc.Encode(m) }
}

// imageCreate is `import` (fromSrc=-: a rootfs tar in the body) and `pull`
// (fromImage: from the registry the reference names).
func (d *Daemon) imageCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("fromImage") != "" {
		d.imagePull(w, r)
		return
	}
	switch q.Get("fromSrc") {
	case "-":
	case "":
		writeError(w, badRequest("fromImage or fromSrc is required"))
		return
	default:
		writeError(w, badRequest("import from a URL is not supported: send the tar in the body (fromSrc=-)"))
		return
	}
	ref := q.Get("repo")
	if tag := q.Get("tag"); ref != "" && tag != "" {
		ref += ":" + tag
	}
	cfg, err := parseChanges(q["changes"])
	if err != nil {
		writeError(w, err)
		return
	}
	opts := images.ImportOptions{Comment: q.Get("message"), Config: cfg}
	if p := q.Get("platform"); p != "" {
		opts.OS, opts.Architecture, _ = strings.Cut(p, "/")
	}
	img, err := d.images.Import(r.Context(), r.Body, ref, opts)
	if err != nil {
		writeError(w, fmt.Errorf("import: %w", err))
		return
	}
	d.publish(events.TypeImage, "import", img.ID, map[string]string{"name": ref})
	streamJSON(w)(jsonstream.Message{Status: img.ID})
}

func (d *Daemon) imageList(w http.ResponseWriter, r *http.Request) {
	f, until, err := timeFilters(r, validImageFilters...)
	if err != nil {
		writeError(w, err)
		return
	}
	created, err := f.createdRange(func(ref string) (time.Time, error) {
		img, err := d.images.Get(ref)
		return img.Created, err
	})
	if err != nil {
		writeError(w, err)
		return
	}
	list, err := d.images.List()
	if err != nil {
		writeError(w, err)
		return
	}
	// As dockerd: without all=1, an untagged image that is another's
	// parent (a build's intermediate step) is not listed.
	all := boolParam(r, "all")
	parents := map[string]bool{}
	for _, img := range list {
		parents[img.Parent] = true
	}
	out := []image.Summary{}
	for _, img := range list {
		if !f.matchImage(img) || !created.admits(img.Created) || !createdBefore(img.Created, until) ||
			(!all && parents[img.ID] && len(img.RepoTags) == 0 && len(img.RepoDigests) == 0) {
			continue
		}
		tags, digests := f.imageRefs(img)
		out = append(out, image.Summary{
			ID: img.ID, ParentID: img.Parent, RepoTags: nonNilSlice(tags), RepoDigests: nonNilSlice(digests),
			Created: img.Created.Unix(), Size: img.Size, SharedSize: -1, Containers: -1,
			Labels: nonNilMap(img.Config.Config.Labels),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) imageInspect(w http.ResponseWriter, r *http.Request, name string) {
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
	arch, osName := img.Config.Architecture, img.Config.OS
	if arch == "" {
		arch = runtime.GOARCH
	}
	if osName == "" {
		osName = "linux"
	}
	resp := image.InspectResponse{
		ID: img.ID, RepoTags: nonNilSlice(img.RepoTags), RepoDigests: nonNilSlice(img.RepoDigests),
		Comment: comment, Created: img.Created.UTC().Format(time.RFC3339Nano), Author: img.Config.Author,
		Config:       &dockerspec.DockerOCIImageConfig{ImageConfig: img.Config.Config, DockerOCIImageConfigExt: imageConfigExt(img)},
		Architecture: arch, Os: osName, Size: img.Size,
		RootFS:   image.RootFS{Type: "layers", Layers: layers},
		Metadata: image.Metadata{LastTagTime: img.LastTagTime},
	}
	if v := requestVersion(r); versionLess(v, "1.52") {
		legacy, err := legacyImageInspect(resp, img.Parent, v)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, legacy)
		return
	}
	if img.Parent != "" {
		// Still shown when known, as dockerd's for a legacy build's image.
		legacy, err := withFields(resp, map[string]any{"Parent": img.Parent})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, legacy)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Image config fields that clients of API 1.51 and older got even when
// empty (below 1.50 also the container-config fields an image config
// carried then), as dockerd's router adds them back for those versions.
var (
	legacyImageConfig = map[string]any{
		"Cmd": nil, "Entrypoint": nil, "Env": nil, "Labels": nil, "OnBuild": nil,
		"User": "", "Volumes": nil, "WorkingDir": "",
	}
	legacyImageConfig149 = map[string]any{
		"AttachStderr": false, "AttachStdin": false, "AttachStdout": false, "Domainname": "",
		"Hostname": "", "Image": "", "OpenStdin": false, "StdinOnce": false, "Tty": false,
	}
)

// legacyImageInspect is resp as API versions before 1.52 had it: Parent,
// Comment, DockerVersion and Author always present, and the image config's
// empty fields too, so that the docker CLI's templates such as
// {{.Config.Entrypoint}} or {{.Comment}} (CLI 28 speaks 1.50) print an
// empty value instead of failing with "map has no entry for key".
func legacyImageInspect(resp image.InspectResponse, parent, version string) (map[string]any, error) {
	out, err := withFields(resp, map[string]any{"Parent": parent, "Comment": resp.Comment, "DockerVersion": "", "Author": resp.Author})
	if err != nil {
		return nil, err
	}
	extra := maps.Clone(legacyImageConfig)
	if versionLess(version, "1.50") {
		maps.Copy(extra, legacyImageConfig149)
	}
	cfg, _ := out["Config"].(map[string]any)
	if cfg == nil {
		cfg = map[string]any{}
	}
	for k, v := range extra {
		if _, ok := cfg[k]; !ok {
			cfg[k] = v
		}
	}
	out["Config"] = cfg
	return out, nil
}

// withFields is v's JSON object with the fields of extra it lacks added.
func withFields(v any, extra map[string]any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // sizes stay integers
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	for k, x := range extra {
		if _, ok := out[k]; !ok {
			out[k] = x
		}
	}
	return out, nil
}

func (d *Daemon) imageHistory(w http.ResponseWriter, name string) {
	h, err := d.images.History(name)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []image.HistoryResponseItem{}
	for _, e := range h {
		out = append(out, image.HistoryResponseItem{ID: e.ID, Created: e.Created.Unix(), CreatedBy: e.CreatedBy,
			Tags: nonNilSlice(e.Tags), Size: e.Size, Comment: e.Comment})
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) imageTag(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	dst := q.Get("repo")
	if dst == "" {
		writeError(w, badRequest("repository name must have at least one component"))
		return
	}
	if t := q.Get("tag"); t != "" {
		dst += ":" + t
	}
	if err := d.images.Tag(name, dst); err != nil {
		writeError(w, err)
		return
	}
	d.publishTag(dst)
	w.WriteHeader(http.StatusCreated)
}

// publishTag emits the image event of a new tag ref, named in the familiar
// form as dockerd's ("evt:latest": the docker CLI sends the repository as
// docker.io/library/evt).
func (d *Daemon) publishTag(ref string) {
	img, err := d.images.Get(ref)
	if err != nil {
		return
	}
	if p, err := images.ParseReference(ref); err == nil {
		ref = p.String()
	}
	d.publish(events.TypeImage, "tag", img.ID, map[string]string{"name": ref})
}

func (d *Daemon) imageRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	img, _ := d.images.Get(name)
	var removed []images.Removed
	var err error
	// As dockerd: a running container's image is not deleted, even with
	// force. By ID that is refused (a hard conflict); by its last name
	// with force the name goes and the image stays, nameless.
	ctr, force := d.runningUserOf(img.ID), boolParam(r, "force")
	switch {
	case ctr != "" && isIDPrefix(img.ID, name):
		err = withStatus(http.StatusConflict, fmt.Errorf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", shortID(img.ID), shortID(ctr)))
	case ctr != "" && force && len(img.RepoTags) > 1:
		removed, err = d.images.Remove(name, false)
	case ctr != "" && force:
		var x images.Removed
		x, err = d.images.Untag(name)
		removed = []images.Removed{x}
	default:
		removed, err = d.images.Remove(name, force)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	out := []image.DeleteResponse{}
	for _, x := range removed {
		if x.Untagged != "" {
			d.publish(events.TypeImage, "untag", img.ID, map[string]string{"name": x.Untagged})
		}
		if x.Deleted != "" {
			d.publish(events.TypeImage, "delete", x.Deleted, map[string]string{"name": x.Deleted})
		}
		out = append(out, image.DeleteResponse{Untagged: x.Untagged, Deleted: x.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}

// runningUserOf is the ID of a running container of image id, "" if none.
func (d *Daemon) runningUserOf(id string) string {
	if id == "" {
		return ""
	}
	for _, c := range d.containers.List(false) {
		if c.State.Running && c.ImageID == id {
			return c.ID
		}
	}
	return ""
}

// shortID is the 12 hex digits of an ID that dockerd's messages show.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// isIDPrefix reports whether name is image id or a prefix of it (with or
// without "sha256:") rather than a reference.
func isIDPrefix(id, name string) bool {
	hexID := strings.TrimPrefix(id, "sha256:")
	name = strings.TrimPrefix(name, "sha256:")
	return name != "" && strings.HasPrefix(hexID, name)
}

func (d *Daemon) imageSave(w http.ResponseWriter, r *http.Request) {
	d.saveImages(w, r, r.URL.Query()["names"])
}

func (d *Daemon) saveImages(w http.ResponseWriter, r *http.Request, names []string) {
	if len(names) == 0 {
		writeError(w, badRequest("no image names given"))
		return
	}
	// Every name is checked before the stream starts: afterwards an error
	// can only cut the tar.
	for _, n := range names {
		if _, err := d.images.Get(n); err != nil {
			writeError(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := d.images.Save(r.Context(), w, names); err != nil {
		panic(http.ErrAbortHandler)
	}
}

// imageLoad answers 200 and a JSON stream whatever the archive, as
// dockerd's: an archive that cannot be loaded is an error message in the
// stream, "error" and errorDetail (docker-py's images.load raises
// ImageLoadError from the first, the docker CLI prints the second and
// exits 1; a 400 was an APIError to docker-py).
func (d *Daemon) imageLoad(w http.ResponseWriter, r *http.Request) {
	send, fail := buildStream(w)
	refs, err := d.images.Load(r.Context(), r.Body)
	if err != nil {
		fail(fmt.Errorf("load: %w", err))
		return
	}
	for _, ref := range refs {
		d.publish(events.TypeImage, "load", ref, map[string]string{"name": ref})
		if strings.HasPrefix(ref, "sha256:") {
			send(jsonstream.Message{Stream: "Loaded image ID: " + ref + "\n"})
		} else {
			send(jsonstream.Message{Stream: "Loaded image: " + ref + "\n"})
		}
	}
}

// imagePrune removes the dangling images (no tag) that containers do not
// use; with dangling=false (prune -a), every image no container uses.
func (d *Daemon) imagePrune(w http.ResponseWriter, r *http.Request) {
	f, until, err := timeFilters(r, "dangling", "label", "label!", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	danglingOnly := true
	if f.any("dangling", func(v string) bool { return v == "false" || v == "0" }) {
		danglingOnly = false
	}
	list, err := d.images.List()
	if err != nil {
		writeError(w, err)
		return
	}
	used := map[string]bool{}
	if d.containers != nil {
		for _, c := range d.containers.List(true) {
			used[c.ImageID] = true
		}
	}
	report := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	for _, img := range list {
		if (danglingOnly && len(img.RepoTags) > 0) || used[img.ID] || !f.labels(img.Config.Config.Labels) ||
			!f.notLabels(img.Config.Config.Labels) || !createdBefore(img.Created, until) {
			continue
		}
		// Never forced: Remove refuses an image a container uses. An image
		// tagged in several repositories is refused by ID, so prune -a
		// removes it tag by tag.
		removed, err := d.images.Remove(img.ID, false)
		if err != nil && !danglingOnly && errors.Is(err, images.ErrConflict) && !used[img.ID] {
			removed, err = d.removeAllTags(img)
		}
		if err != nil {
			continue // in use by a container, or gone meanwhile
		}
		for _, x := range removed {
			report.ImagesDeleted = append(report.ImagesDeleted, image.DeleteResponse{Untagged: x.Untagged, Deleted: x.Deleted})
		}
		if img.Size > 0 {
			report.SpaceReclaimed += uint64(img.Size)
		}
	}
	writeJSON(w, http.StatusOK, report)
}

// removeAllTags removes an image tagged in several repositories tag by tag:
// the last removal deletes it, and is refused if a container uses it.
func (d *Daemon) removeAllTags(img images.Image) ([]images.Removed, error) {
	var out []images.Removed
	for _, t := range img.RepoTags {
		removed, err := d.images.Remove(t, false)
		out = append(out, removed...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// imageConfigExt is the Docker part of an image's config that the OCI type
// drops: its HEALTHCHECK.
func imageConfigExt(img images.Image) dockerspec.DockerOCIImageConfigExt {
	ext := dockerspec.DockerOCIImageConfigExt{OnBuild: img.OnBuild, Shell: img.Shell}
	if h := img.Healthcheck; h != nil {
		ext.Healthcheck = &dockerspec.HealthcheckConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
	}
	return ext
}
