package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/tests/harness"
)

// registry is Debian's docker-registry (the reference distribution
// registry) serving from a temporary directory on 127.0.0.1.
type registry struct {
	Addr string // 127.0.0.1:PORT
	dir  string
	cmd  *exec.Cmd
}

// freePort picks a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRegistry starts docker-registry; with users set it requires htpasswd
// basic auth. It is killed and its storage removed when the test ends.
func startRegistry(t *testing.T, users map[string]string) *registry {
	t.Helper()
	return startRegistryOn(t, "127.0.0.1", users)
}

// startRegistryOn is startRegistry listening on host (an IP of this machine).
func startRegistryOn(t *testing.T, host string, users map[string]string) *registry {
	t.Helper()
	return startRegistryIn(t, nil, host, users)
}

// startRegistryIn is startRegistryOn inside test host h's network
// namespace (h nil: the machine's).
func startRegistryIn(t testing.TB, h *harness.Host, host string, users map[string]string) *registry {
	t.Helper()
	return startRegistryTLS(t, h, host, users, "", "")
}

// startRegistryTLS is startRegistryIn serving TLS with the PEM files
// certFile and keyFile (plain HTTP when both are empty).
func startRegistryTLS(t testing.TB, h *harness.Host, host string, users map[string]string, certFile, keyFile string) *registry {
	t.Helper()
	bin := "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing (apt-get install -y docker-registry): %v", bin, err)
	}
	dir := t.TempDir()
	r := &registry{Addr: fmt.Sprintf("%s:%d", host, freePort(t)), dir: dir}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), r.Addr)
	if certFile != "" {
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	if len(users) > 0 {
		var lines []string
		for u, p := range users {
			out, err := exec.Command("htpasswd", "-Bbn", u, p).Output()
			if err != nil {
				t.Fatalf("htpasswd (apt-get install -y apache2-utils): %v", err)
			}
			lines = append(lines, strings.TrimSpace(string(out)))
		}
		hp := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: shoal-test\n    path: %s\n", hp)
	}
	cp := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cp, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "serve", cp)
	if h != nil {
		r.cmd = h.Command(bin, "serve", cp) // nsenter execs the registry: Kill reaches it
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		logf.Close()
	})
	waitFor(t, "registry "+r.Addr, func() bool {
		if h != nil {
			conn, err := h.DialTimeout("tcp", r.Addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err == nil
		}
		if certFile != "" {
			conn, err := net.DialTimeout("tcp", r.Addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err == nil
		}
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return r
}

func imageID(t *testing.T, d *harness.Daemon, ref string) string {
	t.Helper()
	return strings.TrimSpace(d.Must("image", "inspect", "--format", "{{.Id}}", ref))
}

// TestPushPull pushes busybox to docker-registry and pulls it into a
// second daemon: same image ID (the config digest), runnable, RepoDigests set.
func TestPushPull(t *testing.T) {
	reg := startRegistry(t, nil)
	d1 := engine(t)
	ref := reg.Addr + "/test/busybox:v1"
	d1.Must("tag", "busybox", ref)
	out := d1.Must("push", ref)
	for _, want := range []string{"The push refers to repository [" + reg.Addr + "/test/busybox]", "Pushed", "v1: digest: sha256:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("push output lacks %q:\n%s", want, out)
		}
	}
	if out := d1.Must("push", ref); !strings.Contains(out, "Layer already exists") {
		t.Fatalf("second push did not find the layer:\n%s", out)
	}
	// Another repository of the same registry: the layer is mounted, not sent.
	d1.Must("tag", "busybox", reg.Addr+"/other/box:v1")
	if out := d1.Must("push", reg.Addr+"/other/box:v1"); !strings.Contains(out, "Mounted from test/busybox") {
		t.Fatalf("push to another repository did not mount the layer:\n%s", out)
	}

	d2 := harness.StartDaemon(t, harness.Options{})
	out = d2.Must("pull", ref)
	for _, want := range []string{"v1: Pulling from test/busybox", "Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + ref, ref} {
		if !strings.Contains(out, want) {
			t.Fatalf("pull output lacks %q:\n%s", want, out)
		}
	}
	if a, b := imageID(t, d1, "busybox"), imageID(t, d2, ref); a != b {
		t.Fatalf("pulled image ID %s, pushed %s", b, a)
	}
	if out := d2.Must("run", "--rm", "--network", "none", ref, "echo", "pulled"); strings.TrimSpace(out) != "pulled" {
		t.Fatalf("run of the pulled image: %q", out)
	}
	digests := d2.Must("image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	if !strings.Contains(digests, reg.Addr+"/test/busybox@sha256:") {
		t.Fatalf("RepoDigests %s", digests)
	}
	if out := d2.Must("pull", ref); !strings.Contains(out, "Status: Image is up to date for "+ref) {
		t.Fatalf("second pull:\n%s", out)
	}
	// --all-tags pulls every tag of the repository.
	d1.Must("tag", "busybox", reg.Addr+"/test/busybox:v2")
	d1.Must("push", reg.Addr+"/test/busybox:v2")
	d2.Must("pull", "-a", reg.Addr+"/test/busybox")
	if out := d2.Must("images", "--format", "{{.Tag}}", reg.Addr+"/test/busybox"); strings.Fields(out) == nil || !strings.Contains(out, "v1") || !strings.Contains(out, "v2") {
		t.Fatalf("tags after pull -a: %q", out)
	}
	d2.Must("rmi", reg.Addr+"/test/busybox:v2")
	// By digest, into a third name: the digest of the pushed manifest.
	dgst := strings.Trim(strings.TrimSpace(digests), `[]"`)
	d2.Must("rmi", ref)
	if out := d2.Must("pull", dgst); !strings.Contains(out, "Digest:") {
		t.Fatalf("pull by digest:\n%s", out)
	}

	// run pulls a missing image as docker does, unless --pull never.
	d2.Must("rmi", "-f", dgst)
	if r := d2.Run("run", "--rm", "--pull", "never", "--network", "none", ref, "true"); r.Code == 0 || !strings.Contains(r.Stderr, "No such image") {
		t.Fatalf("run --pull never of a missing image: %s", r)
	}
	r := d2.Run("run", "--rm", "--network", "none", ref, "echo", "auto")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "auto" || !strings.Contains(r.Stderr, "Unable to find image '"+ref+"' locally") {
		t.Fatalf("run of a missing image: %s", r)
	}
	r = d2.Run("create", "--pull", "always", "--network", "none", ref, "true")
	if r.Code != 0 || !strings.Contains(r.Stderr, "Status: Image is up to date") {
		t.Fatalf("create --pull always: %s", r)
	}
	ctr := strings.TrimSpace(r.Stdout)
	if out := d2.Must("images", "--digests"); !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(reg.Addr+"/test/busybox") + `\s+v1\s+` + regexp.QuoteMeta(strings.SplitN(dgst, "@", 2)[1]) + `\s`).MatchString(out) {
		t.Fatalf("images --digests:\n%s", out)
	}
	// prune -a keeps what a container uses, then takes it once unused.
	if out := d2.Must("image", "prune", "-a", "-f"); strings.Contains(out, "deleted:") {
		t.Fatalf("prune -a removed an image in use:\n%s", out)
	}
	d2.Must("rm", ctr)
	if out := d2.Must("image", "prune", "-a", "-f"); !strings.Contains(out, "deleted: sha256:") {
		t.Fatalf("prune -a kept an unused image:\n%s", out)
	}
	d2.Must("pull", "-q", ref)

	// Bad input: a tag that is not there, an unknown platform.
	r = d2.Run("pull", reg.Addr+"/test/busybox:nope")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("pull of a missing tag: %s", r)
	}
	r = d2.Run("pull", "--platform", "plan9/mips", ref)
	if r.Code == 0 || !strings.Contains(r.Stderr, "plan9/mips") {
		t.Fatalf("pull for another platform: %s", r)
	}
}

// TestPullPushBasicAuth: an htpasswd registry refuses anonymous pushes
// and a wrong password; login stores the credentials as docker does.
func TestPullPushBasicAuth(t *testing.T) {
	reg := startRegistry(t, map[string]string{"alice": "s3cret"})
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	d := engine(t)
	ref := reg.Addr + "/team/box:1"
	d.Must("tag", "busybox", ref)
	r := d.Run("push", ref)
	if r.Code == 0 || !strings.Contains(r.Stderr, "authentication required") {
		t.Fatalf("anonymous push: %s", r)
	}
	r = d.RunStdin([]byte("wrong\n"), "login", "-u", "alice", "--password-stdin", reg.Addr)
	if r.Code == 0 || !strings.Contains(r.Stderr, "incorrect username or password") {
		t.Fatalf("login with a wrong password: %s", r)
	}
	if out := d.Must("login", "-u", "alice", "-p", "s3cret", reg.Addr); !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %s", out)
	}
	b, err := os.ReadFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"))
	if err != nil || !strings.Contains(string(b), `"`+reg.Addr+`"`) || !strings.Contains(string(b), "YWxpY2U6czNjcmV0") {
		t.Fatalf("config.json after login: %s %v", b, err)
	}
	d.Must("push", ref)
	d.Must("rmi", ref)
	d.Must("pull", ref)
	// The docker CLI logs in through POST /auth and pushes with its credentials.
	docker := dockerCLI(t, d)
	if r := docker("login", "-u", "alice", "-p", "nope", reg.Addr); r.Code == 0 {
		t.Fatalf("docker login with a wrong password: %s", r)
	}
	if r := docker("login", "-u", "alice", "-p", "s3cret", reg.Addr); r.Code != 0 || !strings.Contains(r.Stdout, "Login Succeeded") {
		t.Fatalf("docker login: %s", r)
	}
	d.Must("tag", "busybox", reg.Addr+"/team/box:2")
	if r := docker("push", reg.Addr+"/team/box:2"); r.Code != 0 || !strings.Contains(r.Stdout, "2: digest: sha256:") {
		t.Fatalf("docker push with credentials: %s", r)
	}
	if out := d.Must("logout", reg.Addr); !strings.Contains(out, "Removing login credentials for "+reg.Addr) {
		t.Fatalf("logout: %s", out)
	}
	if r := d.Run("pull", ref); r.Code == 0 {
		t.Fatalf("pull after logout succeeded: %s", r)
	}
}

// testImage is a one-or-more-layer image served by fakeRegistry.
type testImage struct {
	manifest []byte
	blobs    map[digest.Digest][]byte
	layers   []digest.Digest
}

// makeTestImage builds an image of gzip layers, each holding one file of
// the given size (random-ish bytes, so gzip cannot shrink it much).
func makeTestImage(t *testing.T, sizes ...int) testImage {
	t.Helper()
	img := testImage{blobs: map[digest.Digest][]byte{}}
	var diffIDs []string
	var layers []map[string]any
	for i, n := range sizes {
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		data := make([]byte, n)
		x := uint32(i*7919 + 1)
		for j := range data {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			data[j] = byte(x)
		}
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("file%d", i), Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
		tw.Write(data)
		tw.Close()
		diffIDs = append(diffIDs, digest.FromBytes(tb.Bytes()).String())
		var zb bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&zb, gzip.BestSpeed)
		zw.Write(tb.Bytes())
		zw.Close()
		d := digest.FromBytes(zb.Bytes())
		img.blobs[d] = zb.Bytes()
		img.layers = append(img.layers, d)
		layers = append(layers, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": zb.Len()})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/file0"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	cd := digest.FromBytes(cfg)
	img.blobs[cd] = cfg
	img.manifest, _ = json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)}, "layers": layers})
	return img
}

// fakeRegistry serves img as test/img:latest; serve may alter a blob's
// bytes or pace (corruption, slowness) and counts the GETs of each blob.
type fakeRegistry struct {
	Addr  string
	img   testImage
	mu    sync.Mutex
	gets  map[digest.Digest]int
	serve atomic.Value // func(w http.ResponseWriter, d digest.Digest, b []byte)
}

func startFakeRegistry(t *testing.T, img testImage) *fakeRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRegistry{Addr: ln.Addr().String(), img: img, gets: map[digest.Digest]int{}}
	f.serve.Store(func(w http.ResponseWriter, _ digest.Digest, b []byte) { w.Write(b) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/", func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/v2/")
		switch {
		case p == "":
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		case p == "test/img/manifests/latest" || p == "test/img/manifests/"+digest.FromBytes(img.manifest).String():
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write(img.manifest)
		case strings.HasPrefix(p, "test/img/blobs/"):
			d := digest.Digest(strings.TrimPrefix(p, "test/img/blobs/"))
			b, ok := img.blobs[d]
			if !ok {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`, http.StatusNotFound)
				return
			}
			f.mu.Lock()
			f.gets[d]++
			f.mu.Unlock()
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			f.serve.Load().(func(http.ResponseWriter, digest.Digest, []byte))(w, d, b)
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeRegistry) count(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[d]
}

// storeBlobs lists the daemon's content store and ingest areas.
func storeBlobs(t *testing.T, d *harness.Daemon) (blobs, ingest []string) {
	t.Helper()
	blobs, _ = filepath.Glob(filepath.Join(d.Root, "content", "blobs", "sha256", "*"))
	a, _ := filepath.Glob(filepath.Join(d.Root, "content", "ingest", "*"))
	b, _ := filepath.Glob(filepath.Join(d.Root, "distribution", "ingest", "*"))
	return blobs, append(a, b...)
}

// TestPullBadRegistry: a corrupted, truncated, oversized or missing blob
// and garbage for a manifest each fail the pull with a one-line error
// naming the cause, and leave nothing in the store.
func TestPullBadRegistry(t *testing.T) {
	img := makeTestImage(t, 4096, 8192)
	f := startFakeRegistry(t, img)
	d := harness.StartDaemon(t, harness.Options{})
	ref := f.Addr + "/test/img"
	before, _ := storeBlobs(t, d)
	check := func(what, want string) {
		t.Helper()
		r := d.Run("pull", ref)
		msg := strings.TrimSpace(r.Stderr)
		if r.Code == 0 || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Fatalf("%s: want one line with %q, got %s", what, want, r)
		}
		if out := d.Must("images", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("%s: an image was left: %s", what, out)
		}
		blobs, ingest := storeBlobs(t, d)
		if len(blobs) != len(before) || len(ingest) != 0 {
			t.Fatalf("%s: store left with blobs %v, ingest %v", what, blobs, ingest)
		}
	}
	bad := img.layers[1]
	f.serve.Store(func(w http.ResponseWriter, d digest.Digest, b []byte) {
		if d == bad {
			b = append([]byte(nil), b...)
			b[len(b)/2] ^= 0xff
		}
		w.Write(b)
	})
	check("corrupted blob", "digest mismatch")
	f.serve.Store(func(w http.ResponseWriter, d digest.Digest, b []byte) {
		if d == bad {
			b = b[:len(b)/2]
		}
		w.Write(b)
	})
	check("truncated blob", "layer "+string(bad))
	f.serve.Store(func(w http.ResponseWriter, d digest.Digest, b []byte) {
		if d == bad {
			b = append(append([]byte(nil), b...), make([]byte, 1<<20)...)
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		}
		w.Write(b)
	})
	check("oversized blob", "more than the")
	delete(img.blobs, bad)
	f.serve.Store(func(w http.ResponseWriter, _ digest.Digest, b []byte) { w.Write(b) })
	check("missing blob", "missing blob")
	img.manifest = []byte("<html>not a manifest</html>")
	f.img = img
	g := startFakeRegistry(t, img)
	ref = g.Addr + "/test/img"
	check("garbage manifest", "malformed manifest")
}

// TestPullResumesAfterRestart kills the daemon while a big layer downloads;
// the next pull does not fetch the finished layer again.
func TestPullResumesAfterRestart(t *testing.T) {
	img := makeTestImage(t, 4096, 8<<20)
	f := startFakeRegistry(t, img)
	small, big := img.layers[0], img.layers[1]
	release := make(chan struct{})
	var once sync.Once
	f.serve.Store(func(w http.ResponseWriter, d digest.Digest, b []byte) {
		if d != big {
			w.Write(b)
			return
		}
		// Half the big layer, then hang until the test lets go.
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		<-release
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	d := harness.StartDaemon(t, harness.Options{})
	ref := f.Addr + "/test/img"
	done := make(chan harness.Result, 1)
	go func() { done <- d.Run("pull", ref) }()
	state := filepath.Join(d.Root, "images", "state.json")
	waitFor(t, "the small layer to be stored", func() bool {
		b, _ := os.ReadFile(state)
		return strings.Contains(string(b), `"pins"`)
	})
	d.Kill9()
	<-done
	once.Do(func() { close(release) })
	f.serve.Store(func(w http.ResponseWriter, _ digest.Digest, b []byte) { w.Write(b) })
	d.Restart()
	out := d.Must("pull", ref)
	if !strings.Contains(out, small.Encoded()[:12]+": Already exists") {
		t.Fatalf("second pull did not reuse the finished layer:\n%s", out)
	}
	if n := f.count(small); n != 1 {
		t.Fatalf("the finished layer was downloaded %d times", n)
	}
	if n := f.count(big); n != 2 {
		t.Fatalf("the big layer was downloaded %d times, want 2", n)
	}
	if b, _ := os.ReadFile(state); strings.Contains(string(b), `"pins"`) {
		t.Fatalf("layers still pinned after the pull finished:\n%s", b)
	}
}

// TestPullDockerClients: the docker CLI and docker-py push to and pull from
// docker-registry through shoal's daemon.
func TestPullDockerClients(t *testing.T) {
	reg := startRegistry(t, nil)
	d := engine(t)
	docker := dockerCLI(t, d)
	ref := reg.Addr + "/clients/box:dock"
	d.Must("tag", "busybox", ref)
	if r := docker("push", ref); r.Code != 0 || !strings.Contains(r.Stdout, "dock: digest: sha256:") {
		t.Fatalf("docker push: %s", r)
	}
	id := imageID(t, d, ref)
	d.Must("rmi", ref)
	if r := docker("pull", ref); r.Code != 0 || !strings.Contains(r.Stdout, "Already exists") || !strings.Contains(r.Stdout, "Downloaded newer image") {
		t.Fatalf("docker pull: %s", r)
	}
	if got := imageID(t, d, ref); got != id {
		t.Fatalf("docker pull gave %s, want %s", got, id)
	}
	d.Must("rmi", ref)
	if r := docker("run", "--rm", "--network", "none", ref, "echo", "via-docker"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "via-docker" || !strings.Contains(r.Stderr, "Unable to find image") {
		t.Fatalf("docker run of a missing image: %s", r)
	}
	out := dockerPy(t, d, fmt.Sprintf(`
img = c.images.pull(%[1]q, tag="dock")
print("pulled", img.id)
img.tag(%[1]q, tag="py")
for line in c.images.push(%[1]q, tag="py", stream=True, decode=True):
    if "error" in line: raise SystemExit(line["error"])
    if "aux" in line: print("pushed", line["aux"]["Digest"])
`, reg.Addr+"/clients/box"))
	if !strings.Contains(out, "pulled "+id) || !strings.Contains(out, "pushed sha256:") {
		t.Fatalf("docker-py pull/push:\n%s", out)
	}
}

// TestPullInsecureRegistry: a plain-HTTP registry on a non-loopback address
// is refused (HTTPS only) until the daemon names it --insecure-registry.
func TestPullInsecureRegistry(t *testing.T) {
	ip := ""
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			ip = n.IP.String()
			break
		}
	}
	if ip == "" {
		t.Skip("no non-loopback IPv4 address")
	}
	reg := startRegistryOn(t, ip, nil)
	d := engine(t)
	ref := reg.Addr + "/plain/box:1"
	d.Must("tag", "busybox", ref)
	if r := d.Run("push", ref); r.Code == 0 || !strings.Contains(r.Stderr, "HTTPS") {
		t.Fatalf("push over plain HTTP without --insecure-registry: %s", r)
	}
	d.Restart("--insecure-registry", reg.Addr)
	d.Must("push", ref)
	d.Must("rmi", ref)
	if out := d.Must("pull", ref); !strings.Contains(out, "Digest: sha256:") {
		t.Fatalf("pull from an insecure registry:\n%s", out)
	}
}

// TestPullDiskFull: the disk fills up mid-download (a 256 KiB tmpfs over
// the ingest area); the pull fails naming it and stores nothing.
func TestPullDiskFull(t *testing.T) {
	img := makeTestImage(t, 4096, 2<<20)
	f := startFakeRegistry(t, img)
	d := harness.StartDaemon(t, harness.Options{})
	ingest := filepath.Join(d.Root, "distribution", "ingest")
	if err := syscall.Mount("tmpfs", ingest, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(ingest, syscall.MNT_DETACH) })
	before, _ := storeBlobs(t, d)
	r := d.Run("pull", f.Addr+"/test/img")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no space left on device") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Fatalf("pull onto a full disk: %s", r)
	}
	blobs, left := storeBlobs(t, d)
	if len(blobs) != len(before) || len(left) != 0 {
		t.Fatalf("a failed pull left blobs %v, ingest %v", blobs, left)
	}
	if out := d.Must("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("an image was left: %s", out)
	}
}

// TestPullSkopeoOCIZstd: skopeo rewrites a pushed image as an OCI manifest
// with zstd layers; a second daemon pulls that, gets the same image ID
// (the config is the same bytes) and pushes it back.
func TestPullSkopeoOCIZstd(t *testing.T) {
	needSkopeo(t)
	reg := startRegistry(t, nil)
	d1 := engine(t)
	src := reg.Addr + "/test/busybox:v1"
	d1.Must("tag", "busybox", src)
	d1.Must("push", src)
	dst := reg.Addr + "/test/oci:zstd"
	out, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "oci",
		"--dest-compress-format", "zstd", "docker://"+src, "docker://"+dst).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+dst).Output()
	if err != nil || !strings.Contains(string(raw), "application/vnd.oci.image.layer.v1.tar+zstd") {
		t.Fatalf("skopeo did not write a zstd OCI manifest: %v\n%s", err, raw)
	}
	d2 := harness.StartDaemon(t, harness.Options{})
	if out := d2.Must("pull", dst); !strings.Contains(out, "Pull complete") {
		t.Fatalf("pull of the OCI zstd image:\n%s", out)
	}
	if a, b := imageID(t, d1, src), imageID(t, d2, dst); a != b {
		t.Fatalf("OCI zstd image ID %s, docker gzip image ID %s", b, a)
	}
	if out := d2.Must("run", "--rm", "--network", "none", dst, "echo", "zstd"); strings.TrimSpace(out) != "zstd" {
		t.Fatalf("run: %q", out)
	}
	back := reg.Addr + "/test/oci:back"
	d2.Must("tag", dst, back)
	if out := d2.Must("push", back); !strings.Contains(out, "Layer already exists") && !strings.Contains(out, "Mounted from test/oci") {
		t.Fatalf("push of the pulled zstd image re-uploaded its layer:\n%s", out)
	}
	if out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+back).CombinedOutput(); err != nil {
		t.Fatalf("skopeo inspect of the pushed image: %v\n%s", err, out)
	}
}

// TestPullParallel: layers download 3 at a time, as dockerd's default;
// the others wait.
func TestPullParallel(t *testing.T) {
	img := makeTestImage(t, 1024, 1024, 1024, 1024, 1024, 1024)
	f := startFakeRegistry(t, img)
	var inflight, most atomic.Int32
	f.serve.Store(func(w http.ResponseWriter, d digest.Digest, b []byte) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(300 * time.Millisecond)
		w.Write(b)
	})
	d := harness.StartDaemon(t, harness.Options{})
	out := d.Must("pull", f.Addr+"/test/img")
	if got := most.Load(); got != 3 {
		t.Fatalf("%d blob downloads at once, want 3", got)
	}
	if strings.Count(out, ": Waiting") != 3 || strings.Count(out, ": Pull complete") != 6 {
		t.Fatalf("pull output:\n%s", out)
	}
}
