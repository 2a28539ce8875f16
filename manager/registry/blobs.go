package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// upload is an open upload session: its content so far is in file.
type upload struct {
	id   string
	name string

	mu   sync.Mutex // serialises requests of one session
	file *os.File
	size int64
	// sum hashes the session's whole chunks as they arrive, so that the
	// final PUT need not read the blob again (hashing 200 MB takes 0.3-0.7 s
	// of CPU here, which came after the last byte had arrived).
	sum     hash.Hash
	touched time.Time
	done    bool // finished or cancelled: the file is gone
}

// linked returns the size of blob d when repository rt.name links it and the
// store holds it.
func (h *Handler) linked(r *http.Request, name string, d digest.Digest) (int64, *apiError) {
	repo, err := h.cfg.Tags.View(r.Context(), name)
	if err != nil {
		return 0, internal(err)
	}
	if _, ok := repo.Blobs[d]; !ok {
		return 0, errorf(http.StatusNotFound, codeBlobUnknown, "blob "+d.String()+" is not in repository "+name)
	}
	size, err := h.cfg.Blobs.Stat(r.Context(), d)
	if errors.Is(err, ErrNotFound) {
		return 0, errorf(http.StatusNotFound, codeBlobUnknown, "blob "+d.String()+" is unknown")
	}
	if err != nil {
		return 0, internal(err)
	}
	return size, nil
}

func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	d, aerr := parseDigest(rt.ref)
	if aerr != nil {
		return aerr
	}
	if _, aerr := h.linked(r, rt.name, d); aerr != nil {
		return aerr
	}
	rc, _, err := h.cfg.Blobs.Open(r.Context(), d)
	if errors.Is(err, ErrNotFound) {
		return errorf(http.StatusNotFound, codeBlobUnknown, "blob "+d.String()+" is unknown")
	}
	if err != nil {
		return internal(err)
	}
	defer rc.Close()
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Etag", `"`+d.String()+`"`)
	// ServeContent answers HEAD, Range (206, and 416 for unsatisfiable
	// ranges) and If-Range from the seekable content.
	http.ServeContent(w, r, "", time.Time{}, rc)
	return nil
}

func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	d, aerr := parseDigest(rt.ref)
	if aerr != nil {
		return aerr
	}
	// Only the repository's link goes; the content stays in the store until
	// garbage collection finds no repository holding it.
	err := h.cfg.Tags.Update(r.Context(), rt.name, func(repo *Repository) error {
		if _, ok := repo.Blobs[d]; !ok {
			return errorf(http.StatusNotFound, codeBlobUnknown, "blob "+d.String()+" is not in repository "+rt.name)
		}
		delete(repo.Blobs, d)
		delete(repo.LinkedAt, d)
		return nil
	})
	if aerr := asAPIError(err); aerr != nil {
		return aerr
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// asAPIError passes an *apiError through and makes anything else a 500.
func asAPIError(err error) *apiError {
	if err == nil {
		return nil
	}
	var aerr *apiError
	if errors.As(err, &aerr) {
		return aerr
	}
	return internal(err)
}

// link records blob d (size bytes) in repository name.
func (h *Handler) link(r *http.Request, name string, d digest.Digest, size int64) *apiError {
	return asAPIError(h.cfg.Tags.Update(r.Context(), name, func(repo *Repository) error {
		repo.init()
		repo.Blobs[d] = size
		repo.LinkedAt[d] = time.Now().UnixMilli()
		delete(repo.Dropped, d)
		return nil
	}))
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// body returns the request body, bounded by MaxBlobSize.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) io.Reader {
	if h.cfg.MaxBlobSize > 0 {
		return http.MaxBytesReader(w, r.Body, h.cfg.MaxBlobSize)
	}
	return r.Body
}

// bodyError classifies a failure while reading an upload's body.
func bodyError(err error) *apiError {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob larger than the limit of %d bytes", mbe.Limit))
	case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrUnsupportedDigest):
		return errorf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	return errorf(http.StatusBadRequest, codeBlobUploadInvalid, "reading the upload: "+err.Error())
}

// ingestError classifies a failure of BlobStore.Ingest: the content's fault
// (400) or the store's (500).
func ingestError(err error) *apiError {
	if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrUnsupportedDigest) {
		return errorf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	return internal(err)
}

// recordingReader remembers the error reading the request body, to tell a
// client's broken upload from the store's failure.
type recordingReader struct {
	r   io.Reader
	err error
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF {
		rr.err = err
	}
	return n, err
}

// contentLength returns the declared Content-Length, -1 when absent.
func contentLength(r *http.Request) int64 {
	if r.Header.Get("Content-Length") == "" {
		return -1
	}
	return r.ContentLength
}

func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, aerr := parseDigest(m)
		if aerr != nil {
			return aerr
		}
		// A mount from a repository that does not hold the blob falls back
		// to an ordinary upload session, as the spec allows.
		if from := q.Get("from"); from != "" && validName(from) {
			if size, aerr := h.linked(r, from, d); aerr == nil {
				if aerr := h.link(r, rt.name, d, size); aerr != nil {
					return aerr
				}
				blobCreated(w, rt.name, d)
				return nil
			}
		}
	}
	if ds := q.Get("digest"); ds != "" {
		d, aerr := parseDigest(ds)
		if aerr != nil {
			return aerr
		}
		body := &recordingReader{r: h.body(w, r)}
		if err := h.cfg.Blobs.Ingest(r.Context(), d, contentLength(r), body); err != nil {
			if body.err != nil {
				return bodyError(body.err)
			}
			return ingestError(err)
		}
		size, err := h.cfg.Blobs.Stat(r.Context(), d)
		if err != nil {
			return internal(err)
		}
		if aerr := h.link(r, rt.name, d, size); aerr != nil {
			return aerr
		}
		blobCreated(w, rt.name, d)
		return nil
	}
	u, aerr := h.newUpload(rt.name)
	if aerr != nil {
		return aerr
	}
	uploadAccepted(w, u, http.StatusAccepted)
	return nil
}

func uploadAccepted(w http.ResponseWriter, u *upload, status int) {
	w.Header().Set("Location", "/v2/"+u.name+"/blobs/uploads/"+u.id)
	w.Header().Set("Docker-Upload-UUID", u.id)
	w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

// newUpload opens a session, first dropping sessions idle for too long.
func (h *Handler) newUpload(name string) (*upload, *apiError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	for id, u := range h.uploads {
		if u.mu.TryLock() {
			if now.Sub(u.touched) > h.cfg.UploadIdle {
				u.discard()
				delete(h.uploads, id)
			}
			u.mu.Unlock()
		}
	}
	if len(h.uploads) >= h.cfg.MaxUploads {
		return nil, errorf(http.StatusTooManyRequests, codeTooManyRequests, fmt.Sprintf("too many open uploads (%d)", len(h.uploads)))
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, internal(err)
	}
	id := hex.EncodeToString(rnd[:])
	if err := os.MkdirAll(h.cfg.UploadDir, 0o700); err != nil {
		return nil, internal(fmt.Errorf("upload directory: %w", err))
	}
	f, err := os.OpenFile(filepath.Join(h.cfg.UploadDir, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, internal(fmt.Errorf("upload file: %w", err))
	}
	u := &upload{id: id, name: name, file: f, touched: now, sum: sha256.New()}
	h.uploads[id] = u
	return u, nil
}

// discard removes the session's file; u.mu is held.
func (u *upload) discard() {
	if u.done {
		return
	}
	u.done = true
	u.file.Close()
	os.Remove(u.file.Name())
}

// session finds upload id of repository name and locks it; the caller
// unlocks u.mu.
func (h *Handler) session(rt route) (*upload, *apiError) {
	h.mu.Lock()
	u, ok := h.uploads[rt.ref]
	h.mu.Unlock()
	if !ok || u.name != rt.name {
		return nil, errorf(http.StatusNotFound, codeBlobUploadUnknown, "no upload "+quote(rt.ref)+" in repository "+rt.name)
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return nil, errorf(http.StatusNotFound, codeBlobUploadUnknown, "upload "+quote(rt.ref)+" is finished")
	}
	u.touched = time.Now()
	return u, nil
}

func (h *Handler) end(u *upload) {
	u.discard()
	h.mu.Lock()
	delete(h.uploads, u.id)
	h.mu.Unlock()
}

// withSession runs fn on upload rt.ref of repository rt.name, locked.
func (h *Handler) withSession(rt route, fn func(u *upload) *apiError) *apiError {
	u, aerr := h.session(rt)
	if aerr != nil {
		return aerr
	}
	defer u.mu.Unlock()
	return fn(u)
}

func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	return h.withSession(rt, func(u *upload) *apiError {
		uploadAccepted(w, u, http.StatusNoContent)
		return nil
	})
}

func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	return h.withSession(rt, func(u *upload) *apiError {
		h.end(u)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// parseContentRange reads "start-end" (also "bytes start-end" and
// "bytes=start-end", as clients send) into an inclusive range.
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "bytes"), "=")
	s = strings.TrimSpace(s)
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

// appendChunk writes the request body at the session's end. A chunk with a
// Content-Range must start where the session ends and be exactly that long;
// a chunk that fails half-way is cut off again, so the session keeps only
// whole chunks.
func (h *Handler) appendChunk(w http.ResponseWriter, r *http.Request, u *upload) *apiError {
	want := contentLength(r)
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok || start != u.size {
			w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
			return errorf(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
				fmt.Sprintf("Content-Range %s does not continue the upload at offset %d", quote(cr), u.size))
		}
		if want >= 0 && want != end-start+1 {
			return errorf(http.StatusBadRequest, codeBlobUploadInvalid,
				fmt.Sprintf("Content-Range %s does not match Content-Length %d", quote(cr), want))
		}
		want = end - start + 1
	}
	if h.cfg.MaxBlobSize > 0 && want >= 0 && u.size+want > h.cfg.MaxBlobSize {
		return errorf(http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob larger than the limit of %d bytes", h.cfg.MaxBlobSize))
	}
	var body io.Reader = r.Body
	if h.cfg.MaxBlobSize > 0 {
		body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBlobSize-u.size)
	}
	if want >= 0 {
		// Read one byte more than announced to notice an oversized body.
		body = io.LimitReader(body, want+1)
	}
	if _, err := u.file.Seek(u.size, io.SeekStart); err != nil {
		return internal(err)
	}
	// The hash's state before the chunk, to cut a failed chunk off it too.
	before, err := u.sum.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return internal(fmt.Errorf("upload %s: %w", u.id, err))
	}
	n, err := io.Copy(io.MultiWriter(u.file, u.sum), body)
	if err == nil && want >= 0 && n != want {
		err = fmt.Errorf("got %d bytes, Content-Length/Content-Range announced %d", n, want)
	}
	if err != nil {
		terr := u.file.Truncate(u.size)
		if terr == nil {
			terr = u.sum.(encoding.BinaryUnmarshaler).UnmarshalBinary(before)
		}
		if terr != nil {
			h.end(u)
			return internal(fmt.Errorf("upload %s cannot be rolled back: %w", u.id, terr))
		}
		return bodyError(err)
	}
	u.size += n
	return nil
}

func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	return h.withSession(rt, func(u *upload) *apiError {
		if aerr := h.appendChunk(w, r, u); aerr != nil {
			return aerr
		}
		uploadAccepted(w, u, http.StatusAccepted)
		return nil
	})
}

func (h *Handler) finishUpload(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	return h.withSession(rt, func(u *upload) *apiError { return h.finish(w, r, rt, u) })
}

// finish appends the last chunk, if any, and stores the blob.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, rt route, u *upload) *apiError {
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return errorf(http.StatusBadRequest, codeDigestInvalid, "the digest parameter is missing")
	}
	d, aerr := parseDigest(ds)
	if aerr != nil {
		return aerr
	}
	if r.ContentLength != 0 || r.Header.Get("Content-Range") != "" {
		if aerr := h.appendChunk(w, r, u); aerr != nil {
			return aerr
		}
	}
	// Only the session's whole chunks: never what lies past them. A store
	// that can take the session's file gets it moved, not copied, when the
	// file holds exactly those chunks, which hash to d.
	var err error
	fi, moving := h.cfg.Blobs.(FileIngester)
	st, serr := u.file.Stat()
	switch sum := digest.NewDigest(digest.SHA256, u.sum); {
	case d.Algorithm() == digest.SHA256 && sum != d:
		err = fmt.Errorf("%w: the upload's %d bytes hash to %s, not %s", ErrDigestMismatch, u.size, sum, d)
	case moving && d.Algorithm() == digest.SHA256 && serr == nil && st.Size() == u.size:
		err = fi.IngestFile(r.Context(), d, u.size, u.file.Name())
	default:
		err = h.cfg.Blobs.Ingest(r.Context(), d, u.size, io.NewSectionReader(u.file, 0, u.size))
	}
	// The session ends either way: its content is what it is, and a digest
	// that does not match it will not match on a retry.
	h.end(u)
	if err != nil {
		return ingestError(err)
	}
	if aerr := h.link(r, rt.name, d, u.size); aerr != nil {
		return aerr
	}
	blobCreated(w, rt.name, d)
	return nil
}
