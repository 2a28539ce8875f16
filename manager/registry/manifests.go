package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
)

// The manifest media types the registry accepts.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndex(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }

// descriptor is the part of an OCI descriptor the registry checks.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifestDoc is any of the accepted manifest and index forms.
type manifestDoc struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// parsedManifest is a checked manifest: its record and what it references.
type parsedManifest struct {
	rec       Manifest
	blobs     []descriptor // must be linked in the repository
	manifests []descriptor // must be manifests of the repository
}

func checkDescriptor(what string, d descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: invalid digest %s: %w", what, quote(string(d.Digest)), err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s %s: negative size %d", what, d.Digest, d.Size)
	}
	return nil
}

// parseManifest checks a manifest pushed with Content-Type contentType. The
// media type is the Content-Type, or the document's own mediaType when the
// client sent none; when both are given they must agree.
func parseManifest(contentType string, body []byte) (*parsedManifest, error) {
	var doc manifestDoc
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a JSON manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a JSON manifest: data after the document")
	}
	mt := doc.MediaType
	if ct, _, err := mime.ParseMediaType(contentType); err == nil && ct != "" {
		if mt != "" && mt != ct {
			return nil, fmt.Errorf("Content-Type %s does not match the manifest's mediaType %s", quote(ct), quote(mt))
		}
		mt = ct
	}
	switch mt {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList:
	default:
		return nil, fmt.Errorf("unsupported manifest media type %s", quote(mt))
	}
	if doc.SchemaVersion != 2 {
		return nil, fmt.Errorf("schemaVersion %d, want 2", doc.SchemaVersion)
	}
	p := &parsedManifest{rec: Manifest{MediaType: mt, ArtifactType: doc.ArtifactType, Annotations: doc.Annotations}}
	if isIndex(mt) {
		if doc.Config != nil || doc.Layers != nil {
			return nil, errors.New("an index has no config or layers")
		}
		for i, m := range doc.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), m); err != nil {
				return nil, err
			}
			p.manifests = append(p.manifests, m)
		}
	} else {
		if doc.Config == nil {
			return nil, errors.New("the manifest has no config")
		}
		if doc.Manifests != nil {
			return nil, errors.New("an image manifest has no manifests list")
		}
		if err := checkDescriptor("config", *doc.Config); err != nil {
			return nil, err
		}
		p.blobs = append(p.blobs, *doc.Config)
		if p.rec.ArtifactType == "" {
			// The spec's referrers rule: an image manifest without an
			// artifactType is typed by its config.
			p.rec.ArtifactType = doc.Config.MediaType
		}
		for i, l := range doc.Layers {
			if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), l); err != nil {
				return nil, err
			}
			// Foreign layers (with URLs) are fetched from elsewhere.
			if len(l.URLs) == 0 {
				p.blobs = append(p.blobs, l)
			}
		}
	}
	if doc.Subject != nil {
		if err := checkDescriptor("subject", *doc.Subject); err != nil {
			return nil, err
		}
		p.rec.Subject = doc.Subject.Digest
	}
	for _, d := range p.blobs {
		p.rec.Refs = append(p.rec.Refs, d.Digest)
	}
	for _, d := range p.manifests {
		p.rec.Refs = append(p.rec.Refs, d.Digest)
	}
	return p, nil
}

// resolve returns the digest that tag-or-digest ref names in repo.
func resolve(repo *Repository, name, ref string) (digest.Digest, *apiError) {
	if d, err := digest.Parse(ref); err == nil {
		if _, ok := repo.Manifests[d]; ok {
			return d, nil
		}
		return "", errorf(http.StatusNotFound, codeManifestUnknown, "manifest "+d.String()+" is not in repository "+name)
	}
	// A reference that is no valid tag names nothing that could be here.
	d, ok := repo.Tags[ref]
	if !ok {
		return "", errorf(http.StatusNotFound, codeManifestUnknown, "tag "+quote(ref)+" is not in repository "+name)
	}
	return d, nil
}

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	repo, err := h.cfg.Tags.View(r.Context(), rt.name)
	if err != nil {
		return internal(err)
	}
	d, aerr := resolve(repo, rt.name, rt.ref)
	if aerr != nil {
		return aerr
	}
	rec := repo.Manifests[d]
	rc, size, err := h.cfg.Blobs.Open(r.Context(), d)
	if err != nil {
		return internal(fmt.Errorf("manifest %s: %w", d, err))
	}
	defer rc.Close()
	w.Header().Set("Content-Type", rec.MediaType)
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Etag", `"`+d.String()+`"`)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, rc)
	}
	return nil
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	var tag string
	var want digest.Digest
	if d, err := digest.Parse(rt.ref); err == nil {
		want = d
	} else if tagRE().MatchString(rt.ref) {
		tag = rt.ref
	} else {
		return errorf(http.StatusBadRequest, codeManifestInvalid, "invalid tag or digest "+quote(rt.ref))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.cfg.MaxManifestSize+1))
	if err != nil {
		return errorf(http.StatusBadRequest, codeManifestInvalid, "reading the manifest: "+err.Error())
	}
	if int64(len(body)) > h.cfg.MaxManifestSize {
		return errorf(http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest larger than %d bytes", h.cfg.MaxManifestSize))
	}
	d := digest.FromBytes(body)
	if want != "" {
		d = want.Algorithm().FromBytes(body)
		if d != want {
			return errorf(http.StatusBadRequest, codeDigestInvalid, "the manifest's digest is "+d.String()+", not "+want.String())
		}
	}
	p, err := parseManifest(r.Header.Get("Content-Type"), body)
	if err != nil {
		return errorf(http.StatusBadRequest, codeManifestInvalid, err.Error())
	}
	p.rec.Size = int64(len(body))
	// The check of references first, for a clear error before any content
	// is stored; it is repeated in the update, which is what decides.
	repo, err := h.cfg.Tags.View(r.Context(), rt.name)
	if err != nil {
		return internal(err)
	}
	repo.init()
	relink(repo, p, time.Now())
	if aerr := checkRefs(repo, p); aerr != nil {
		return aerr
	}
	if err := h.cfg.Blobs.Ingest(r.Context(), d, int64(len(body)), bytes.NewReader(body)); err != nil {
		return ingestError(err)
	}
	if h.cfg.Replicate != nil {
		blobs := []digest.Digest{d}
		for _, b := range p.blobs {
			blobs = append(blobs, b.Digest)
		}
		if err := h.cfg.Replicate(r.Context(), blobs); err != nil {
			return errorf(http.StatusServiceUnavailable, codeUnsupported, "copying the manifest's blobs to the other managers: "+err.Error())
		}
	}
	err = h.cfg.Tags.Update(r.Context(), rt.name, func(repo *Repository) error {
		repo.init()
		relink(repo, p, time.Now())
		if aerr := checkRefs(repo, p); aerr != nil {
			return aerr
		}
		repo.Manifests[d] = p.rec
		if tag != "" {
			repo.Tags[tag] = d
		}
		return nil
	})
	if aerr := asAPIError(err); aerr != nil {
		return aerr
	}
	if p.rec.Subject != "" {
		w.Header().Set("OCI-Subject", p.rec.Subject.String())
	}
	w.Header().Set("Location", "/v2/"+rt.name+"/manifests/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// relink links again the blobs of p that garbage collection dropped from
// repo within its grace period: the client saw them linked when it chose
// not to upload them.
func relink(repo *Repository, p *parsedManifest, now time.Time) {
	for _, b := range p.blobs {
		if dl, ok := repo.Dropped[b.Digest]; ok {
			repo.Blobs[b.Digest] = dl.Size
			repo.LinkedAt[b.Digest] = now.UnixMilli()
			delete(repo.Dropped, b.Digest)
		}
	}
}

// checkRefs refuses a manifest whose blobs or child manifests the repository
// does not hold, or holds with another size.
func checkRefs(repo *Repository, p *parsedManifest) *apiError {
	for _, b := range p.blobs {
		size, ok := repo.Blobs[b.Digest]
		if aerr := checkRef("blob", b, size, ok); aerr != nil {
			return aerr
		}
	}
	for _, m := range p.manifests {
		rec, ok := repo.Manifests[m.Digest]
		if aerr := checkRef("manifest", m, rec.Size, ok); aerr != nil {
			return aerr
		}
	}
	return nil
}

func checkRef(what string, d descriptor, size int64, present bool) *apiError {
	if !present {
		e := errorf(http.StatusBadRequest, codeManifestBlobUnknown, what+" "+d.Digest.String()+" is not in the repository")
		e.Detail = map[string]string{"digest": d.Digest.String()}
		return e
	}
	if size != d.Size {
		return errorf(http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("%s %s has %d bytes, the manifest says %d", what, d.Digest, size, d.Size))
	}
	return nil
}

func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	err := h.cfg.Tags.Update(r.Context(), rt.name, func(repo *Repository) error {
		if d, err := digest.Parse(rt.ref); err == nil {
			if _, ok := repo.Manifests[d]; !ok {
				return errorf(http.StatusNotFound, codeManifestUnknown, "manifest "+d.String()+" is not in repository "+rt.name)
			}
			delete(repo.Manifests, d)
			for t, td := range repo.Tags {
				if td == d {
					delete(repo.Tags, t)
				}
			}
			return nil
		}
		if _, ok := repo.Tags[rt.ref]; !ok {
			return errorf(http.StatusNotFound, codeManifestUnknown, "tag "+quote(rt.ref)+" is not in repository "+rt.name)
		}
		delete(repo.Tags, rt.ref)
		return nil
	})
	if aerr := asAPIError(err); aerr != nil {
		return aerr
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *Handler) listTags(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	repo, err := h.cfg.Tags.View(r.Context(), rt.name)
	if err != nil {
		return internal(err)
	}
	if repo.Empty() {
		return errorf(http.StatusNotFound, codeNameUnknown, "repository "+rt.name+" is unknown")
	}
	q := r.URL.Query()
	n := -1
	if ns := q.Get("n"); ns != "" {
		v, err := strconv.Atoi(ns)
		if err != nil || v < 0 {
			return errorf(http.StatusBadRequest, codeUnsupported, "invalid n "+quote(ns))
		}
		n = v
	}
	last := q.Get("last")
	tags := []string{}
	for t := range repo.Tags {
		if t > last {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	if n >= 0 && len(tags) > n {
		tags = tags[:n]
		if n > 0 {
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[n-1]}}
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, rt.name, next.Encode()))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return writeJSON(w, map[string]any{"name": rt.name, "tags": tags})
}

func writeJSON(w http.ResponseWriter, v any) *apiError {
	b, err := json.Marshal(v)
	if err != nil {
		return internal(err)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return nil
}

func (h *Handler) referrers(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	subject, aerr := parseDigest(rt.ref)
	if aerr != nil {
		return aerr
	}
	repo, err := h.cfg.Tags.View(r.Context(), rt.name)
	if err != nil {
		return internal(err)
	}
	filter := r.URL.Query().Get("artifactType")
	list := []descriptor{}
	for d, m := range repo.Manifests {
		if m.Subject != subject || (filter != "" && m.ArtifactType != filter) {
			continue
		}
		list = append(list, descriptor{MediaType: m.MediaType, Digest: d, Size: m.Size, ArtifactType: m.ArtifactType, Annotations: m.Annotations})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Digest < list[j].Digest })
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", MediaTypeOCIIndex)
	return writeJSON(w, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": list})
}
