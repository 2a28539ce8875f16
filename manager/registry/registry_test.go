package registry

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/raftstore"
)

type testRegistry struct {
	t    *testing.T
	h    *Handler
	srv  *httptest.Server
	dir  string
	tags *MemTagStore
}

func newTestRegistry(t *testing.T, cfg Config) *testRegistry {
	t.Helper()
	dir := t.TempDir()
	tags := &MemTagStore{}
	cfg.Blobs = &DirBlobStore{Dir: filepath.Join(dir, "blobs")}
	if cfg.Tags == nil {
		cfg.Tags = tags
	}
	cfg.UploadDir = filepath.Join(dir, "uploads")
	h := New(cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testRegistry{t: t, h: h, srv: srv, dir: dir, tags: tags}
}

// do sends a request; hdr holds header pairs.
func (tr *testRegistry) do(method, path string, body string, hdr ...string) *http.Response {
	tr.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tr.srv.URL+path, rd)
	if err != nil {
		tr.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// expect checks the status and, for an error, the spec's error code.
func expect(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, b)
	}
	if code == "" {
		return
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Message == "" {
		t.Fatalf("error body %q is not the spec's form (%v)", b, err)
	}
	if e.Errors[0].Code != code {
		t.Fatalf("error code %s, want %s (%s)", e.Errors[0].Code, code, e.Errors[0].Message)
	}
}

// storedBlobs lists the blob store's files (temporary ones included).
func (tr *testRegistry) storedBlobs() []string {
	var files []string
	filepath.Walk(filepath.Join(tr.dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

// pushBlob uploads content monolithically into repo.
func (tr *testRegistry) pushBlob(repo, content string) digest.Digest {
	tr.t.Helper()
	d := digest.FromString(content)
	expect(tr.t, tr.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content), http.StatusCreated, "")
	return d
}

func (tr *testRegistry) startSession(repo string) string {
	tr.t.Helper()
	resp := tr.do("POST", "/v2/"+repo+"/blobs/uploads/", "")
	expect(tr.t, resp, http.StatusAccepted, "")
	return resp.Header.Get("Location")
}

func TestBadDigests(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	for _, d := range []string{"sha256:zzz", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:" + strings.Repeat("a", 5000), "nodigest"} {
		expect(t, tr.do("GET", "/v2/a/blobs/"+d, ""), http.StatusBadRequest, codeDigestInvalid)
		expect(t, tr.do("POST", "/v2/a/blobs/uploads/?digest="+d, "x"), http.StatusBadRequest, codeDigestInvalid)
		expect(t, tr.do("GET", "/v2/a/referrers/"+d, ""), http.StatusBadRequest, codeDigestInvalid)
	}
	// A monolithic upload whose content does not match its digest leaves
	// nothing behind.
	wrong := digest.FromString("other")
	expect(t, tr.do("POST", "/v2/a/blobs/uploads/?digest="+wrong.String(), "content"), http.StatusBadRequest, codeDigestInvalid)
	expect(t, tr.do("HEAD", "/v2/a/blobs/"+wrong.String(), ""), http.StatusNotFound, "")
	if f := tr.storedBlobs(); len(f) != 0 {
		t.Fatalf("a refused upload left %v", f)
	}
	// The same through a session: the session ends and nothing is stored.
	loc := tr.startSession("a")
	expect(t, tr.do("PATCH", loc, "content"), http.StatusAccepted, "")
	expect(t, tr.do("PUT", loc+"?digest="+wrong.String(), ""), http.StatusBadRequest, codeDigestInvalid)
	expect(t, tr.do("GET", loc, ""), http.StatusNotFound, codeBlobUploadUnknown)
	if f := tr.storedBlobs(); len(f) != 0 {
		t.Fatalf("a refused upload left %v", f)
	}
	loc = tr.startSession("a")
	expect(t, tr.do("PUT", loc, ""), http.StatusBadRequest, codeDigestInvalid)
}

// rawRequest writes req on a fresh connection and closes the write side, for
// bodies shorter than their Content-Length, which http.Client will not send.
func (tr *testRegistry) rawRequest(req string) *http.Response {
	tr.t.Helper()
	c, err := net.Dial("tcp", tr.srv.Listener.Addr().String())
	if err != nil {
		tr.t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		tr.t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		// The server may drop the connection of a truncated request
		// without an answer: that is a refusal too.
		return nil
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

func TestTruncatedAndOversizedChunks(t *testing.T) {
	tr := newTestRegistry(t, Config{MaxBlobSize: 100})
	loc := tr.startSession("a")
	expect(t, tr.do("PATCH", loc, "hello", "Content-Range", "0-4"), http.StatusAccepted, "")
	// A chunk cut short: announced 10 bytes, sent 5, connection closed.
	resp := tr.rawRequest(fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Range: 5-14\r\nContent-Length: 10\r\n\r\n12345", loc))
	if resp != nil && resp.StatusCode < 400 {
		t.Fatalf("a truncated chunk was accepted: %d", resp.StatusCode)
	}
	st := tr.do("GET", loc, "")
	expect(t, st, http.StatusNoContent, "")
	if r := st.Header.Get("Range"); r != "0-4" {
		t.Fatalf("after a truncated chunk the session holds %s, want 0-4", r)
	}
	// A body longer than its Content-Range (sent chunked, so no
	// Content-Length to refuse it by) is refused and cut off.
	req, _ := http.NewRequest("PATCH", tr.srv.URL+loc, io.MultiReader(strings.NewReader("0123456789")))
	req.Header.Set("Content-Range", "5-7")
	req.ContentLength = -1
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, r2, http.StatusBadRequest, codeBlobUploadInvalid)
	r2.Body.Close()
	// Content-Range and Content-Length that disagree.
	expect(t, tr.do("PATCH", loc, "abc", "Content-Range", "5-9"), http.StatusBadRequest, codeBlobUploadInvalid)
	// Out of order: 416 with the session's range.
	r3 := tr.do("PATCH", loc, "abc", "Content-Range", "7-9")
	if r3.Header.Get("Range") != "0-4" {
		t.Fatalf("416 Range header %q, want 0-4", r3.Header.Get("Range"))
	}
	expect(t, r3, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid)
	for _, cr := range []string{"garbage", "9-5", "-1-3", "5-99999999999999999999999"} {
		expect(t, tr.do("PATCH", loc, "abc", "Content-Range", cr), http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid)
	}
	// Over MaxBlobSize, in a session and monolithically.
	expect(t, tr.do("PATCH", loc, strings.Repeat("x", 200)), http.StatusRequestEntityTooLarge, codeSizeInvalid)
	big := strings.Repeat("y", 200)
	expect(t, tr.do("POST", "/v2/a/blobs/uploads/?digest="+digest.FromString(big).String(), big), http.StatusRequestEntityTooLarge, codeSizeInvalid)
	// What was kept still finishes into the right blob.
	d := digest.FromString("hello")
	expect(t, tr.do("PUT", loc+"?digest="+d.String(), ""), http.StatusCreated, "")
	g := tr.do("GET", "/v2/a/blobs/"+d.String(), "")
	if b, _ := io.ReadAll(g.Body); string(b) != "hello" {
		t.Fatalf("blob holds %q", b)
	}
	if f := tr.storedBlobs(); len(f) != 1 {
		t.Fatalf("blob store holds %v, want one blob", f)
	}
}

func TestUploadSessions(t *testing.T) {
	tr := newTestRegistry(t, Config{MaxUploads: 2})
	loc := tr.startSession("a")
	// A session belongs to its repository.
	other := strings.Replace(loc, "/v2/a/", "/v2/b/", 1)
	expect(t, tr.do("PATCH", other, "x"), http.StatusNotFound, codeBlobUploadUnknown)
	expect(t, tr.do("GET", "/v2/a/blobs/uploads/nosuch", ""), http.StatusNotFound, codeBlobUploadUnknown)
	tr.startSession("a")
	expect(t, tr.do("POST", "/v2/a/blobs/uploads/", ""), http.StatusTooManyRequests, codeTooManyRequests)
	expect(t, tr.do("DELETE", loc, ""), http.StatusNoContent, "")
	expect(t, tr.do("DELETE", loc, ""), http.StatusNotFound, codeBlobUploadUnknown)
	tr.startSession("a")
	if ents, _ := os.ReadDir(filepath.Join(tr.dir, "uploads")); len(ents) != 2 {
		t.Fatalf("upload dir holds %d files, want the 2 open sessions", len(ents))
	}
}

func TestRangeReads(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	d := tr.pushBlob("a", "0123456789")
	r := tr.do("GET", "/v2/a/blobs/"+d.String(), "", "Range", "bytes=2-4")
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusPartialContent || string(b) != "234" {
		t.Fatalf("range read: %d %q", r.StatusCode, b)
	}
	expect(t, tr.do("GET", "/v2/a/blobs/"+d.String(), "", "Range", "bytes=100-200"), http.StatusRequestedRangeNotSatisfiable, "")
	h := tr.do("HEAD", "/v2/a/blobs/"+d.String(), "")
	if h.StatusCode != 200 || h.ContentLength != 10 || h.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("HEAD: %d %d %q", h.StatusCode, h.ContentLength, h.Header.Get("Docker-Content-Digest"))
	}
	// Another repository does not serve it until it is mounted.
	expect(t, tr.do("GET", "/v2/b/blobs/"+d.String(), ""), http.StatusNotFound, codeBlobUnknown)
	expect(t, tr.do("POST", "/v2/b/blobs/uploads/?mount="+d.String()+"&from=a", ""), http.StatusCreated, "")
	expect(t, tr.do("GET", "/v2/b/blobs/"+d.String(), ""), http.StatusOK, "")
	expect(t, tr.do("DELETE", "/v2/b/blobs/"+d.String(), ""), http.StatusAccepted, "")
	expect(t, tr.do("GET", "/v2/b/blobs/"+d.String(), ""), http.StatusNotFound, codeBlobUnknown)
	expect(t, tr.do("GET", "/v2/a/blobs/"+d.String(), ""), http.StatusOK, "")
}

func TestNames(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	long := strings.Repeat("a", 300)
	for _, n := range []string{long, "UPPER", "a/../b", "a//b", "-a", "a_", "%2e%2e"} {
		expect(t, tr.do("GET", "/v2/"+n+"/tags/list", ""), http.StatusBadRequest, codeNameInvalid)
	}
	expect(t, tr.do("GET", "/v2/a/b/c/tags/list", ""), http.StatusNotFound, codeNameUnknown)
	expect(t, tr.do("GET", "/v2/a/nothing", ""), http.StatusNotFound, codeUnsupported)
	expect(t, tr.do("POST", "/v2/a/manifests/x", ""), http.StatusMethodNotAllowed, codeUnsupported)
	expect(t, tr.do("GET", "/v2/", ""), http.StatusOK, "")
}

// manifestFor returns an OCI image manifest over config and layers.
func manifestFor(config, layer string, extra string) string {
	return fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]%s}`,
		MediaTypeOCIManifest, digest.FromString(config), len(config), digest.FromString(layer), len(layer), extra)
}

func TestGarbageManifests(t *testing.T) {
	tr := newTestRegistry(t, Config{MaxManifestSize: 4096})
	ct := []string{"Content-Type", MediaTypeOCIManifest}
	good := manifestFor("{}", "layer", "")
	for name, body := range map[string]string{
		"not json":        "garbage",
		"trailing data":   `{"schemaVersion":2,"config":{"digest":"sha256:` + strings.Repeat("0", 64) + `","size":1}} {}`,
		"schema 1":        strings.Replace(good, `"schemaVersion":2`, `"schemaVersion":1`, 1),
		"no config":       `{"schemaVersion":2,"layers":[]}`,
		"bad digest":      strings.Replace(good, "sha256:", "sha256:zz", 1),
		"negative size":   strings.Replace(good, `"size":2`, `"size":-2`, 1),
		"mediaType clash": strings.Replace(good, MediaTypeOCIManifest, MediaTypeDockerManifest, 1),
		"array":           `[1,2,3]`,
		"index with config": `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","config":{"digest":"sha256:` +
			strings.Repeat("0", 64) + `","size":1},"manifests":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			expect(t, tr.do("PUT", "/v2/a/manifests/t", body, ct...), http.StatusBadRequest, codeManifestInvalid)
		})
	}
	expect(t, tr.do("PUT", "/v2/a/manifests/t", good, "Content-Type", "text/plain"), http.StatusBadRequest, codeManifestInvalid)
	expect(t, tr.do("PUT", "/v2/a/manifests/t", strings.Repeat(" ", 5000)+good, ct...), http.StatusRequestEntityTooLarge, codeSizeInvalid)
	expect(t, tr.do("PUT", "/v2/a/manifests/"+digest.FromString("x").String(), good, ct...), http.StatusBadRequest, codeDigestInvalid)
	expect(t, tr.do("PUT", "/v2/a/manifests/bad:tag", good, ct...), http.StatusBadRequest, codeManifestInvalid)
	// Blobs not pushed: MANIFEST_BLOB_UNKNOWN, then only the config pushed.
	expect(t, tr.do("PUT", "/v2/a/manifests/t", good, ct...), http.StatusBadRequest, codeManifestBlobUnknown)
	tr.pushBlob("a", "{}")
	expect(t, tr.do("PUT", "/v2/a/manifests/t", good, ct...), http.StatusBadRequest, codeManifestBlobUnknown)
	// A layer in another repository does not count.
	tr.pushBlob("b", "layer")
	expect(t, tr.do("PUT", "/v2/a/manifests/t", good, ct...), http.StatusBadRequest, codeManifestBlobUnknown)
	// A size that disagrees with the blob's.
	tr.pushBlob("a", "layer")
	expect(t, tr.do("PUT", "/v2/a/manifests/t", strings.Replace(good, `"size":5`, `"size":6`, 1), ct...), http.StatusBadRequest, codeManifestInvalid)
	// Nothing was tagged by the refusals.
	repo, _ := tr.tags.View(t.Context(), "a")
	if len(repo.Tags) != 0 || len(repo.Manifests) != 0 {
		t.Fatalf("refused manifests left %v %v", repo.Tags, repo.Manifests)
	}
	expect(t, tr.do("PUT", "/v2/a/manifests/t", good, ct...), http.StatusCreated, "")
}

func TestIndexNeedsItsManifests(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	tr.pushBlob("a", "{}")
	tr.pushBlob("a", "layer")
	m := manifestFor("{}", "layer", "")
	md := digest.FromString(m)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`, MediaTypeDockerList, MediaTypeDockerManifest, md, len(m))
	ict := []string{"Content-Type", MediaTypeDockerList}
	expect(t, tr.do("PUT", "/v2/a/manifests/i", index, ict...), http.StatusBadRequest, codeManifestBlobUnknown)
	dm := strings.Replace(m, MediaTypeOCIManifest, MediaTypeDockerManifest, 1)
	md = digest.FromString(dm)
	index = fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`, MediaTypeDockerList, MediaTypeDockerManifest, md, len(dm))
	expect(t, tr.do("PUT", "/v2/a/manifests/"+md.String(), dm, "Content-Type", MediaTypeDockerManifest), http.StatusCreated, "")
	expect(t, tr.do("PUT", "/v2/a/manifests/i", index, ict...), http.StatusCreated, "")
	g := tr.do("GET", "/v2/a/manifests/i", "")
	b, _ := io.ReadAll(g.Body)
	if string(b) != index || g.Header.Get("Content-Type") != MediaTypeDockerList || g.Header.Get("Docker-Content-Digest") != digest.FromString(index).String() {
		t.Fatalf("GET index: %q %q", g.Header.Get("Content-Type"), b)
	}
}

func TestTagsPagination(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	tr.pushBlob("a", "{}")
	tr.pushBlob("a", "layer")
	m := manifestFor("{}", "layer", "")
	for _, tag := range []string{"e", "b", "d", "a", "c"} {
		expect(t, tr.do("PUT", "/v2/a/manifests/"+tag, m, "Content-Type", MediaTypeOCIManifest), http.StatusCreated, "")
	}
	var got []string
	path := "/v2/a/tags/list?n=2"
	for path != "" {
		r := tr.do("GET", path, "")
		var l struct{ Tags []string }
		if err := json.NewDecoder(r.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l.Tags...)
		path = ""
		if link := r.Header.Get("Link"); link != "" {
			path = link[1:strings.Index(link, ">")]
		}
	}
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Fatalf("paginated tags %v", got)
	}
	expect(t, tr.do("GET", "/v2/a/tags/list?n=x", ""), http.StatusBadRequest, codeUnsupported)
	// Deleting the manifest by digest removes every tag on it.
	expect(t, tr.do("DELETE", "/v2/a/manifests/c", ""), http.StatusAccepted, "")
	expect(t, tr.do("GET", "/v2/a/manifests/c", ""), http.StatusNotFound, codeManifestUnknown)
	expect(t, tr.do("DELETE", "/v2/a/manifests/"+digest.FromString(m).String(), ""), http.StatusAccepted, "")
	expect(t, tr.do("GET", "/v2/a/manifests/a", ""), http.StatusNotFound, codeManifestUnknown)
}

func TestReferrers(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	tr.pushBlob("a", "{}")
	tr.pushBlob("a", "layer")
	subject := digest.FromString("whatever; the subject need not exist")
	ref := manifestFor("{}", "layer", fmt.Sprintf(`,"artifactType":"application/x-sig","subject":{"mediaType":%q,"digest":%q,"size":3}`, MediaTypeOCIManifest, subject))
	r := tr.do("PUT", "/v2/a/manifests/"+digest.FromString(ref).String(), ref, "Content-Type", MediaTypeOCIManifest)
	expect(t, r, http.StatusCreated, "")
	if r.Header.Get("OCI-Subject") != subject.String() {
		t.Fatalf("OCI-Subject %q", r.Header.Get("OCI-Subject"))
	}
	for filter, n := range map[string]int{"": 1, "?artifactType=application/x-sig": 1, "?artifactType=other": 0} {
		g := tr.do("GET", "/v2/a/referrers/"+subject.String()+filter, "")
		var idx struct {
			Manifests []descriptor
		}
		if err := json.NewDecoder(g.Body).Decode(&idx); err != nil || len(idx.Manifests) != n {
			t.Fatalf("referrers%s: %v %v", filter, idx, err)
		}
		if filter != "" && g.Header.Get("OCI-Filters-Applied") != "artifactType" {
			t.Fatalf("no OCI-Filters-Applied")
		}
	}
}

// TestConcurrentPushes pushes the same image under many tags while its
// layer's link is deleted and mounted again: every answer is a spec answer,
// and a manifest is stored only while its blobs are linked.
func TestConcurrentPushes(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testConcurrentPushes(t, &MemTagStore{}) })
	t.Run("raftstore", func(t *testing.T) { testConcurrentPushes(t, RaftTagStore{Store: raftstore.NewMemoryStore(nil, nil)}) })
}

func testConcurrentPushes(t *testing.T, tags TagStore) {
	tr := newTestRegistry(t, Config{Tags: tags})
	tr.pushBlob("a", "{}")
	layer := tr.pushBlob("a", "layer")
	tr.pushBlob("src", "layer")
	m := manifestFor("{}", "layer", "")
	errs := make(chan error, 64)
	for i := 0; i < 16; i++ {
		go func() {
			for j := 0; j < 8; j++ {
				var req *http.Request
				switch (i + j) % 3 {
				case 0:
					req, _ = http.NewRequest("PUT", tr.srv.URL+fmt.Sprintf("/v2/a/manifests/t%d-%d", i, j), strings.NewReader(m))
					req.Header.Set("Content-Type", MediaTypeOCIManifest)
				case 1:
					req, _ = http.NewRequest("DELETE", tr.srv.URL+"/v2/a/blobs/"+layer.String(), nil)
				default:
					req, _ = http.NewRequest("POST", tr.srv.URL+"/v2/a/blobs/uploads/?from=src&mount="+layer.String(), nil)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusCreated, http.StatusAccepted, http.StatusNotFound, http.StatusBadRequest:
				default:
					errs <- fmt.Errorf("%s %s: %d", req.Method, req.URL.Path, resp.StatusCode)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 16; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	repo, _ := tags.View(t.Context(), "a")
	if len(repo.Tags) == 0 {
		t.Fatal("no manifest push went through")
	}
	for tag, d := range repo.Tags {
		if _, ok := repo.Manifests[d]; !ok {
			t.Fatalf("tag %s names a manifest the repository lacks", tag)
		}
	}
}

// TestFinishedUploadIsMoved: a blob pushed in chunks is stored by moving the
// session's file (the blob is the same inode), not by writing its bytes a
// second time; a finish with a wrong digest stores nothing and ends the
// session, its file gone.
func TestFinishedUploadIsMoved(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	content := strings.Repeat("chunk", 1000)
	d := digest.FromString(content)
	loc := tr.startSession("moved")
	expect(t, tr.do("PATCH", loc, content, "Content-Type", "application/octet-stream"), http.StatusAccepted, "")
	sessions, err := os.ReadDir(filepath.Join(tr.dir, "uploads"))
	if err != nil || len(sessions) != 1 {
		t.Fatalf("upload sessions: %v %v", sessions, err)
	}
	session, err := os.Stat(filepath.Join(tr.dir, "uploads", sessions[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	expect(t, tr.do("PUT", loc+sep+"digest="+d.String(), ""), http.StatusCreated, "")
	blob, err := os.Stat(filepath.Join(tr.dir, "blobs", "sha256", d.Encoded()))
	if err != nil {
		t.Fatalf("blob not stored: %v", err)
	}
	if !os.SameFile(session, blob) {
		t.Fatal("the blob is a copy of the session's file, not the file itself")
	}
	if left, _ := os.ReadDir(filepath.Join(tr.dir, "uploads")); len(left) != 0 {
		t.Fatalf("upload files left: %v", left)
	}

	loc = tr.startSession("moved")
	expect(t, tr.do("PATCH", loc, "other bytes", "Content-Type", "application/octet-stream"), http.StatusAccepted, "")
	expect(t, tr.do("PUT", loc+sep+"digest="+digest.FromString("not these").String(), ""), http.StatusBadRequest, "DIGEST_INVALID")
	if _, err := os.Stat(filepath.Join(tr.dir, "blobs", "sha256", digest.FromString("other bytes").Encoded())); err == nil {
		t.Fatal("a blob of a refused finish was stored")
	}
	if left, _ := os.ReadDir(filepath.Join(tr.dir, "uploads")); len(left) != 0 {
		t.Fatalf("the refused session's file is left: %v", left)
	}
}
