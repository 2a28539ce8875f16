// Package registry serves the OCI distribution API (v1.1): blobs, chunked
// and monolithic uploads, cross-repository mounts, manifests and indexes by
// tag and digest, tag lists and the referrers API. Blob content lives in a
// BlobStore and the repositories' tags and manifest records in a TagStore;
// both are declared here and filled by the daemon.
package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Error codes of the distribution spec.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeUnsupported         = "UNSUPPORTED"
	codeTooManyRequests     = "TOOMANYREQUESTS"
)

var (
	// nameRE is the spec's repository name grammar.
	nameRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	})
	tagRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`) })
)

// maxNameLen bounds repository names as the reference registry does.
const maxNameLen = 255

// Defaults for Config's limits.
const (
	DefaultMaxManifestSize = 8 << 20
	DefaultMaxUploads      = 256
	DefaultUploadIdle      = time.Hour
)

// Config configures a Handler.
type Config struct {
	Blobs BlobStore
	Tags  TagStore
	// UploadDir holds upload sessions' partial content.
	UploadDir string
	// MaxBlobSize refuses larger blobs (0: no limit).
	MaxBlobSize int64
	// MaxManifestSize refuses larger manifests (0: DefaultMaxManifestSize).
	MaxManifestSize int64
	// MaxUploads bounds open upload sessions (0: DefaultMaxUploads).
	MaxUploads int
	// UploadIdle is how long an untouched upload session lives (0: DefaultUploadIdle).
	UploadIdle time.Duration
	// GCGrace is how long garbage collection leaves an unreferenced blob
	// (0: DefaultGCGrace).
	GCGrace time.Duration
	// Authenticate, when set, is asked for every request; an error answers
	// 401 and the request goes no further.
	Authenticate func(*http.Request) error
	// Replicate, when set, is called at a manifest PUT with the manifest's
	// digest and every blob it references, after the manifest is stored and
	// before its tag or record is: an error fails the PUT, so a push is
	// acknowledged only once Replicate has copied what it needs.
	Replicate func(ctx context.Context, blobs []digest.Digest) error
}

// Handler serves the distribution API under /v2/.
type Handler struct {
	cfg Config

	mu      sync.Mutex
	uploads map[string]*upload
}

// New returns a Handler over cfg's stores.
func New(cfg Config) *Handler {
	if cfg.MaxManifestSize <= 0 {
		cfg.MaxManifestSize = DefaultMaxManifestSize
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = DefaultMaxUploads
	}
	if cfg.UploadIdle <= 0 {
		cfg.UploadIdle = DefaultUploadIdle
	}
	if cfg.GCGrace <= 0 {
		cfg.GCGrace = DefaultGCGrace
	}
	return &Handler{cfg: cfg, uploads: map[string]*upload{}}
}

// apiError is one entry of the spec's error body.
type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, msg string) *apiError {
	return &apiError{status: status, Code: code, Message: msg}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string][]*apiError{"errors": {e}})
}

// route is a parsed request path.
type route struct {
	name string // repository
	kind string // "blob", "uploads", "upload", "manifest", "tags", "referrers"
	ref  string // digest, tag or upload id
}

// parsePath splits /v2/<name>/<endpoint>. Names may hold slashes, so the
// endpoint is recognised from the end of the path.
func parsePath(p string) (route, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, false
	}
	seg := strings.Split(rest, "/")
	n := len(seg)
	name := func(k int) string { return strings.Join(seg[:n-k], "/") }
	switch {
	case n >= 3 && seg[n-3] == "blobs" && seg[n-2] == "uploads":
		if seg[n-1] == "" {
			return route{name: name(3), kind: "uploads"}, true
		}
		return route{name: name(3), kind: "upload", ref: seg[n-1]}, true
	case n >= 3 && seg[n-2] == "blobs" && seg[n-1] == "uploads":
		return route{name: name(2), kind: "uploads"}, true
	case n >= 3 && seg[n-2] == "blobs":
		return route{name: name(2), kind: "blob", ref: seg[n-1]}, true
	case n >= 3 && seg[n-2] == "manifests":
		return route{name: name(2), kind: "manifest", ref: seg[n-1]}, true
	case n >= 3 && seg[n-2] == "tags" && seg[n-1] == "list":
		return route{name: name(2), kind: "tags"}, true
	case n >= 3 && seg[n-2] == "referrers":
		return route{name: name(2), kind: "referrers", ref: seg[n-1]}, true
	}
	return route{}, false
}

func validName(name string) bool {
	return len(name) <= maxNameLen && nameRE().MatchString(name)
}

// parseDigest accepts a well-formed digest of an algorithm we can verify.
func parseDigest(s string) (digest.Digest, *apiError) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", errorf(http.StatusBadRequest, codeDigestInvalid, "invalid digest "+quote(s)+": "+err.Error())
	}
	return d, nil
}

// quote shortens hostile input before it is echoed in an error.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if h.cfg.Authenticate != nil {
		if err := h.cfg.Authenticate(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="shoal registry"`)
			writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "authentication required: "+err.Error()))
			return
		}
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, errorf(http.StatusMethodNotAllowed, codeUnsupported, "method not allowed"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	rt, ok := parsePath(r.URL.Path)
	if !ok {
		writeError(w, errorf(http.StatusNotFound, codeUnsupported, "no such endpoint"))
		return
	}
	if !validName(rt.name) {
		writeError(w, errorf(http.StatusBadRequest, codeNameInvalid, "invalid repository name "+quote(rt.name)))
		return
	}
	fn, ok := endpoints[rt.kind+" "+r.Method]
	if !ok {
		writeError(w, errorf(http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported here"))
		return
	}
	if err := fn(h, w, r, rt); err != nil {
		writeError(w, err)
	}
}

type endpoint func(h *Handler, w http.ResponseWriter, r *http.Request, rt route) *apiError

// endpoints maps "<route kind> <method>" to its handler.
var endpoints = map[string]endpoint{
	"blob GET":        (*Handler).getBlob,
	"blob HEAD":       (*Handler).getBlob,
	"blob DELETE":     (*Handler).deleteBlob,
	"uploads POST":    (*Handler).startUpload,
	"upload GET":      (*Handler).uploadStatus,
	"upload PATCH":    (*Handler).patchUpload,
	"upload PUT":      (*Handler).finishUpload,
	"upload DELETE":   (*Handler).cancelUpload,
	"manifest GET":    (*Handler).getManifest,
	"manifest HEAD":   (*Handler).getManifest,
	"manifest PUT":    (*Handler).putManifest,
	"manifest DELETE": (*Handler).deleteManifest,
	"tags GET":        (*Handler).listTags,
	"referrers GET":   (*Handler).referrers,
}

// internal turns a store failure into a 500 (the message names the cause).
func internal(err error) *apiError {
	return &apiError{status: http.StatusInternalServerError, Code: "UNKNOWN", Message: err.Error()}
}
