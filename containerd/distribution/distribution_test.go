package distribution

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/images"
)

var manifestSeeds = []string{
	`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`,
	`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":7,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`,
	`{"schemaVersion":1,"name":"x","fsLayers":[]}`,
	`{"schemaVersion":2,"config":{"digest":"sha512:00","size":-1}}`,
	`{"schemaVersion":2,"manifests":[]}`,
	`[]`, `null`, `{"schemaVersion":2,"mediaType":"text/html"}`,
}

func TestParseManifest(t *testing.T) {
	for i, want := range []string{"", "", "schema 1", "config", "malformed", "malformed manifest", "malformed", "unsupported manifest media type"} {
		m, err := parseManifest([]byte(manifestSeeds[i]), "")
		if want == "" {
			if err != nil {
				t.Fatalf("seed %d: %v", i, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("seed %d: got %v (%+v), want an error with %q", i, err, m, want)
		}
	}
	m, _ := parseManifest([]byte(manifestSeeds[1]), "")
	if d, err := m.pick(Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}); err != nil || d.Digest == "" {
		t.Fatalf("pick arm64: %v", err)
	}
	if _, err := m.pick(Platform{OS: "linux", Architecture: "s390x"}); err == nil || !strings.Contains(err.Error(), "no matching manifest for linux/s390x") {
		t.Fatalf("pick s390x: %v", err)
	}
}

// FuzzParseManifest: whatever a registry sends, the parser returns an
// error or a manifest a pull can use without further checks.
func FuzzParseManifest(f *testing.F) {
	for _, s := range manifestSeeds {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "application/vnd.oci.image.index.v1+json")
	}
	f.Fuzz(func(t *testing.T, b []byte, ct string) {
		m, err := parseManifest(b, ct)
		if err != nil {
			return
		}
		if m.isIndex() {
			if len(m.Manifests) == 0 {
				t.Fatal("index without manifests accepted")
			}
			for _, d := range m.Manifests {
				if d.Digest.Validate() != nil {
					t.Fatal("bad digest accepted")
				}
			}
			m.pick(Platform{OS: "linux", Architecture: "amd64"})
			return
		}
		if m.Config == nil || m.Config.Digest.Validate() != nil {
			t.Fatal("manifest without a valid config accepted")
		}
		for _, l := range m.Layers {
			if l.Digest.Validate() != nil || l.Size < 0 {
				t.Fatal("bad layer accepted")
			}
			if _, err := layerCompression(l.MediaType); err != nil {
				t.Fatal("unknown layer type accepted")
			}
		}
	})
}

// tokenRegistry serves a multi-arch index whose image for this machine
// has one zstd layer, behind a bearer-token challenge.
// serveLayer, if set, sends the layer blob instead of a plain write.
func tokenRegistry(t *testing.T, serveLayer func(w http.ResponseWriter, b []byte)) (*httptest.Server, map[string][]byte, digest.Digest) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("hello"))
	tw.Close()
	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zw.Write(tb.Bytes())
	zw.Close()
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tb.Bytes())}}})
	blobs := map[string][]byte{}
	put := func(b []byte) digest.Digest { d := digest.FromBytes(b); blobs[string(d)] = b; return d }
	man, _ := json.Marshal(manifest{SchemaVersion: 2, MediaType: ocispec.MediaTypeImageManifest,
		Config: &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: put(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerZstd, Digest: put(zb.Bytes()), Size: int64(zb.Len())}}})
	layer := digest.FromBytes(zb.Bytes())
	md := put(man)
	idx, _ := json.Marshal(manifest{SchemaVersion: 2, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("other"), Size: 3, Platform: &ocispec.Platform{OS: "windows", Architecture: runtime.GOARCH}},
		{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(man)), Platform: &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	}})
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			u, p, _ := r.BasicAuth()
			if u != "bob" || p != "pw" || r.URL.Query().Get("scope") != "repository:lib/app:pull" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"token":"T0K"}`))
			return
		}
		if r.Header.Get("Authorization") != "Bearer T0K" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.URL.Path == "/v2/":
		case r.URL.Path == "/v2/lib/app/manifests/multi":
			w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
			w.Write(idx)
		case strings.HasPrefix(r.URL.Path, "/v2/lib/app/manifests/"), strings.HasPrefix(r.URL.Path, "/v2/lib/app/blobs/"):
			b, ok := blobs[filepath.Base(r.URL.Path)]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
			if serveLayer != nil && filepath.Base(r.URL.Path) == string(layer) {
				serveLayer(w, b)
				return
			}
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, blobs, digest.FromBytes(cfg)
}

func TestPullIndexZstdBearer(t *testing.T) {
	srv, _, cfgDigest := tokenRegistry(t, nil)
	root := t.TempDir()
	store, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(store, Options{Root: filepath.Join(root, "distribution")})
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/lib/app:multi"
	ctx := context.Background()
	if _, err := c.Pull(ctx, ref, PullOptions{Auth: Auth{Username: "bob", Password: "bad"}}); err == nil || !strings.Contains(err.Error(), "incorrect username or password") {
		t.Fatalf("pull with a wrong password: %v", err)
	}
	var steps []string
	img, err := c.Pull(ctx, ref, PullOptions{Auth: Auth{Username: "bob", Password: "pw"}, Progress: func(p Progress) { steps = append(steps, p.Status) }})
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != string(cfgDigest) || len(img.RepoDigests) != 1 || img.RepoTags[0] != ref {
		t.Fatalf("pulled %+v, want ID %s", img, cfgDigest)
	}
	if got := strings.Join(steps, ","); !strings.Contains(got, "Pulling fs layer") || !strings.Contains(got, "Pull complete") {
		t.Fatalf("progress %s", got)
	}
	if _, err := c.Pull(ctx, ref, PullOptions{Platform: "linux/s390x", Auth: Auth{Username: "bob", Password: "pw"}}); err == nil || !strings.Contains(err.Error(), "no matching manifest for linux/s390x") {
		t.Fatalf("pull for s390x: %v", err)
	}
}

// TestPushMonolithicFallback: a registry that refuses the streaming PATCH
// gets each blob in one PUT; the manifest lands under the tag.
func TestPushMonolithicFallback(t *testing.T) {
	var mu sync.Mutex
	blobs := map[string][]byte{}
	var manifestType string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		p := r.URL.Path
		switch {
		case p == "/v2/":
		case r.Method == http.MethodHead && strings.HasPrefix(p, "/v2/mono/blobs/"):
			if _, ok := blobs[filepath.Base(p)]; !ok {
				w.WriteHeader(http.StatusNotFound)
			}
		case r.Method == http.MethodPost && p == "/v2/mono/blobs/uploads/":
			w.Header().Set("Location", "/v2/mono/blobs/uploads/u1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPatch:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case r.Method == http.MethodPut && p == "/v2/mono/blobs/uploads/u1":
			b, _ := io.ReadAll(r.Body)
			d := r.URL.Query().Get("digest")
			if digest.FromBytes(b).String() != d {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			blobs[d] = b
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodPut && p == "/v2/mono/manifests/v1":
			manifestType = r.Header.Get("Content-Type")
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	root := t.TempDir()
	store, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/mono:v1"
	if _, err := store.Import(context.Background(), &tb, ref, images.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := New(store, Options{Root: filepath.Join(root, "distribution")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(context.Background(), ref, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 2 || manifestType != mediaDockerManifest || res.Digest == "" {
		t.Fatalf("registry got %d blobs, manifest %q, result %+v", len(blobs), manifestType, res)
	}
}

// TestPullStalledRegistry: a registry that stops in the middle of a blob
// fails the pull after the stall timeout, naming it, and stores nothing.
func TestPullStalledRegistry(t *testing.T) {
	old := stallTimeout
	stallTimeout = 300 * time.Millisecond
	defer func() { stallTimeout = old }()
	release := make(chan struct{})
	srv, _, _ := tokenRegistry(t, func(w http.ResponseWriter, b []byte) {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		<-release
	})
	defer close(release)
	root := t.TempDir()
	store, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ingest := filepath.Join(root, "distribution", "ingest")
	c, err := New(store, Options{Root: filepath.Dir(ingest)})
	if err != nil {
		t.Fatal(err)
	}
	// The context only bounds a hang: a pull it ends fails without the
	// stall's message. The time is logged, not a pass mark.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c.Pull(ctx, strings.TrimPrefix(srv.URL, "http://")+"/lib/app:multi", PullOptions{Auth: Auth{Username: "bob", Password: "pw"}})
	if err == nil || !strings.Contains(err.Error(), "stopped sending data") {
		t.Fatalf("pull from a stalled registry: %v after %s", err, time.Since(start))
	}
	t.Logf("the stalled pull failed after %v (stall timeout %v)", time.Since(start), stallTimeout)
	if left, _ := filepath.Glob(filepath.Join(ingest, "*")); len(left) != 0 {
		t.Fatalf("left in the ingest area: %v", left)
	}
	if l, _ := store.List(); len(l) != 0 {
		t.Fatalf("images after a failed pull: %v", l)
	}
}

// TestCredentialsStayWithTheRegistry: a registry whose upload Location
// points to another host must not get the user's credentials sent there.
func TestCredentialsStayWithTheRegistry(t *testing.T) {
	var leaked atomic.Value
	leaked.Store("")
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			leaked.Store(a)
		}
		if r.Method == http.MethodPatch {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Location", r.URL.Path)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer evil.Close()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", evil.URL+"/upload/1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut:
			w.WriteHeader(http.StatusCreated)
		}
	}))
	defer reg.Close()
	root := t.TempDir()
	store, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(reg.URL, "http://") + "/app:1"
	if _, err := store.Import(context.Background(), bytes.NewReader(tarOf("f", "x")), ref, images.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := New(store, Options{Root: filepath.Join(root, "distribution")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), ref, PushOptions{Auth: Auth{Username: "bob", Password: "pw"}}); err != nil {
		t.Fatal(err)
	}
	if a := leaked.Load().(string); a != "" {
		t.Fatalf("credentials sent to another host: %q", a)
	}
}

func tarOf(name, body string) []byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	return tb.Bytes()
}

// TestInsecureRegistries: loopback and the listed registries skip TLS
// verification (a self-signed registry answers); everything else verifies.
func TestInsecureRegistries(t *testing.T) {
	c := &Client{opts: Options{Insecure: []string{"reg.lan:5000", "10.1.2.3"}}}
	for host, want := range map[string]bool{
		"localhost:5000": true, "127.0.0.1": true, "127.9.9.9:443": true, "[::1]:5000": true,
		"reg.lan:5000": true, "reg.lan:5001": false, "10.1.2.3:5000": true, "registry-1.docker.io": false, "evil.localhost": false,
	} {
		if got := c.isInsecure(host); got != want {
			t.Errorf("isInsecure(%s) = %v, want %v", host, got, want)
		}
	}
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tls.Close()
	root := t.TempDir()
	store, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(store, Options{Root: filepath.Join(root, "distribution")})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Login(context.Background(), strings.TrimPrefix(tls.URL, "https://"), Auth{}); err != nil {
		t.Fatalf("self-signed loopback registry: %v", err)
	}
	if _, err := cl.secure.Get(tls.URL + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the verifying client accepted a self-signed certificate: %v", err)
	}
}

// TestPullBlobSizeFromManifest: a blob must be exactly the size its
// descriptor gives. A layer whose descriptor says 0 bytes (nothing bounded
// the download then) and a config longer than its descriptor says are
// refused, though each blob's digest matches; nothing is stored.
func TestPullBlobSizeFromManifest(t *testing.T) {
	layer := tarOf("f", "x")
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}}})
	for name, c := range map[string]struct {
		cfgSize, layerSize int64
		want               string
	}{
		"layer of size 0":    {int64(len(cfg)), 0, "more than the 0 bytes the manifest says"},
		"config too long":    {int64(len(cfg)) - 1, int64(len(layer)), fmt.Sprintf("got %d bytes, the manifest says %d", len(cfg), len(cfg)-1)},
		"sizes as the blobs": {int64(len(cfg)), int64(len(layer)), ""},
	} {
		t.Run(name, func(t *testing.T) {
			man, _ := json.Marshal(manifest{SchemaVersion: 2, MediaType: ocispec.MediaTypeImageManifest,
				Config: &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: c.cfgSize},
				Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: c.layerSize}}})
			blobs := map[digest.Digest][]byte{digest.FromBytes(cfg): cfg, digest.FromBytes(layer): layer}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/v2/":
				case r.URL.Path == "/v2/app/manifests/1":
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Write(man)
				case blobs[digest.Digest(filepath.Base(r.URL.Path))] != nil:
					w.Write(blobs[digest.Digest(filepath.Base(r.URL.Path))])
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			root := t.TempDir()
			store, err := images.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := New(store, Options{Root: filepath.Join(root, "distribution")})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.Pull(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/app:1", PullOptions{})
			if c.want == "" {
				if err != nil {
					t.Fatalf("pull with honest sizes: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("pull: %v, want %q", err, c.want)
			}
			if l, _ := store.List(); len(l) != 0 {
				t.Fatalf("images after a refused pull: %v", l)
			}
		})
	}
}
