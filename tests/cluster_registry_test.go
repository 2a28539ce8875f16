package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterRegistry: the registry every manager serves on port 5000, with
// skopeo as the client. An image pushed into manager 1 with the user token
// (and a second tag pushed through a follower, which forwards writes to the
// leader) is copied out of manager 2, with identical digests, after manager
// 1 was killed -9; anonymous and wrong-token requests get 401 with a
// challenge; a worker's node certificate pulls; the worker, promoted after
// the push, serves the image by fetching the blobs it lacks from the others,
// and stops serving when demoted again; once removed, its certificate is
// refused; `registry-token --rotate` ends the old token.
func TestClusterRegistry(t *testing.T) {
	needSkopeo(t)
	c := newSwarm(t, 3, 1)
	m1, m2, m3, w := c.managers[0], c.managers[1], c.managers[2], c.workers[0]
	token := strings.TrimSpace(must(t, m1, "swarm", "registry-token"))
	if r := m1.Daemon.Run("swarm", "registry-token"); r.Code == 0 || !strings.Contains(r.Stderr, "--rotate") {
		t.Fatalf("a second registry-token without --rotate: %s", r)
	}
	caPEM := must(t, m1, "swarm", "ca")
	dir := t.TempDir()
	userCerts := filepath.Join(dir, "user")
	writeFiles(t, userCerts, map[string][]byte{"ca.crt": []byte(caPEM)})
	layout := filepath.Join(dir, "layout")
	want := makeOCILayout(t, layout, "v1")
	creds := "anyone:" + token

	ref := func(h *harness.Host, tag string) string { return "docker://" + h.IP + ":5000/test/hello:" + tag }
	// The registry starts with the manager role; the push waits for it.
	waitFor(t, "manager 1's registry", func() bool { return registryUp(m1) })
	mustSkopeo(t, m1, "copy", "--preserve-digests", "--dest-creds", creds, "--dest-cert-dir", userCerts, "oci:"+layout+":v1", ref(m1, "v1"))
	// Through a follower: the manifest PUT goes to the leader.
	leader := c.leader(t, m1)
	follower := m3
	if leader == m3 {
		follower = m2
	}
	mustSkopeo(t, follower, "copy", "--preserve-digests", "--dest-creds", creds, "--dest-cert-dir", userCerts, "oci:"+layout+":v1", ref(follower, "v2"))

	m1.KillAll()
	for _, tag := range []string{"v1", "v2"} {
		out := filepath.Join(dir, "out-"+tag)
		// A follower reads its own replica of the tags: the push was
		// committed by a majority, which manager 2 may not have been part
		// of, so it may learn the tag only from the next leader.
		var r harness.Result
		waitFor(t, "tag "+tag+" on manager 2", func() bool {
			r = skopeo(m2, "copy", "--preserve-digests", "--src-creds", creds, "--src-cert-dir", userCerts, ref(m2, tag), "oci:"+out+":"+tag)
			return r.Code == 0 || !strings.Contains(r.Stderr, "manifest unknown")
		})
		if r.Code != 0 {
			t.Fatalf("copy %s out of manager 2: %s", tag, r)
		}
		if got := layoutManifest(t, out); got != want {
			t.Fatalf("tag %s copied out of manager 2 has manifest %s, pushed %s", tag, got, want)
		}
	}

	// Anonymous and wrong credentials: 401 with a challenge.
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("swarm ca printed no certificate")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			return w.DialTimeout(network, addr, 5*time.Second)
		},
	}}
	for _, auth := range []string{"", "Bearer wrong", "Basic YTpi"} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+m2.IP+":5000/v2/test/hello/manifests/v1", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET with %q: %v", auth, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("GET with %q: %s, WWW-Authenticate %q", auth, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if r := skopeo(w, "inspect", "--raw", "--no-creds", "--cert-dir", userCerts, ref(m2, "v1")); r.Code == 0 {
		t.Fatalf("anonymous skopeo inspect succeeded: %s", r)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+m2.IP+":5000/v2/test/hello/manifests/v1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want {
		t.Fatalf("GET with the bearer token: %s, digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}

	// A worker's node certificate (its key is in the clear on a worker).
	nodeCerts := filepath.Join(dir, "node")
	certPEM, keyPEM := splitPEM(t, filepath.Join(w.Daemon.Root, "swarm", "node.pem"))
	writeFiles(t, nodeCerts, map[string][]byte{"ca.crt": []byte(caPEM), "client.cert": certPEM, "client.key": keyPEM})
	out := filepath.Join(dir, "out-worker")
	mustSkopeo(t, w, "copy", "--preserve-digests", "--src-no-creds", "--src-cert-dir", nodeCerts, ref(m2, "v1"), "oci:"+out+":v1")
	if got := layoutManifest(t, out); got != want {
		t.Fatalf("the worker pulled manifest %s, pushed %s", got, want)
	}

	// The worker promoted: its registry starts empty and fetches from the others.
	mustSettled(t, m2, "node", "promote", w.Name)
	waitFor(t, "the promoted worker's registry", func() bool { return registryUp(w) })
	out = filepath.Join(dir, "out-promoted")
	mustSkopeo(t, m2, "copy", "--preserve-digests", "--src-creds", creds, "--src-cert-dir", userCerts, ref(w, "v1"), "oci:"+out+":v1")
	if got := layoutManifest(t, out); got != want {
		t.Fatalf("the promoted worker served manifest %s, pushed %s", got, want)
	}
	// Demoted, it stops serving.
	mustSettled(t, m2, "node", "demote", w.Name)
	if !pollUntil(20*time.Second, func() bool { return !registryUp(w) }) {
		t.Fatalf("the demoted node's registry still serves; its role changes:\n%s", grepLines(w.Daemon.Log(), "role", "manager", "registry stopped"))
	}
	// Removed from the swarm, its certificate (still within its validity)
	// stops working as soon as the manager's replica has the removal (m2
	// may apply the leader's commit a moment later; seen once in make test).
	mustSettled(t, m2, "node", "rm", "--force", w.Name)
	var r harness.Result
	waitFor(t, "the removed node's certificate refused", func() bool {
		r = skopeo(m2, "inspect", "--raw", "--no-creds", "--cert-dir", nodeCerts, ref(m2, "v1"))
		return r.Code != 0
	})
	if !strings.Contains(r.Stderr, "unauthorized") {
		t.Fatalf("a removed node's certificate: %s", r)
	}
	// A rotated token replaces the old one at once.
	rotated := strings.TrimSpace(mustSettled(t, m2, "swarm", "registry-token", "--rotate"))
	for tok, status := range map[string]int{token: http.StatusUnauthorized, rotated: http.StatusOK} {
		// m2 checks the token against its own copy of the store, which
		// may lag the leader's commit by a moment.
		var resp *http.Response
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			req, _ := http.NewRequest(http.MethodGet, "https://"+m2.IP+":5000/v2/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			var err error
			if resp, err = hc.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == status || time.Now().After(deadline) {
				break
			}
		}
		if resp.StatusCode != status {
			t.Fatalf("after --rotate, GET /v2/ with the %s token: %s", map[bool]string{true: "new", false: "old"}[tok == rotated], resp.Status)
		}
	}
}

// skopeo runs Debian's skopeo on h, bounded.
func skopeo(h *harness.Host, args ...string) harness.Result {
	return h.Exec(append([]string{"skopeo", "--command-timeout", "50s"}, args...)...)
}

// mustSkopeo is skopeo that fails the test unless it exits 0.
func mustSkopeo(t testing.TB, h *harness.Host, args ...string) {
	t.Helper()
	if r := skopeo(h, args...); r.Code != 0 {
		t.Fatalf("skopeo %s on %s: %s", strings.Join(args, " "), h.Name, r)
	}
}

// registryUp reports whether h's registry port takes connections.
func registryUp(h *harness.Host) bool {
	conn, err := h.DialTimeout("tcp", h.IP+":5000", time.Second)
	if err == nil {
		conn.Close()
	}
	return err == nil
}

func writeFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// splitPEM reads a node's pair file: its certificate chain, then its key.
func splitPEM(t *testing.T, path string) (certs, key []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(blk)...)
		} else {
			key = append(key, pem.EncodeToMemory(blk)...)
		}
	}
	if len(certs) == 0 || len(key) == 0 {
		t.Fatalf("%s: no certificate or no key", path)
	}
	return certs, key
}

// makeOCILayout writes a one-layer image as an OCI image layout at dir,
// tagged tag, and returns its manifest's digest. The layer holds random
// bytes, so that no run finds it already stored.
func makeOCILayout(t *testing.T, dir, tag string) string {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	data := make([]byte, 64<<10)
	rand.Read(data)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	layer := put(gz.Bytes())
	return ociImageLayout(t, dir, tag, put,
		[]any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": gz.Len()}},
		[]string{digest.FromBytes(tb.Bytes()).String()}, "/hello").String()
}

// layoutManifest is the digest of the one manifest of the layout at dir.
func layoutManifest(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s/index.json: %v: %s", dir, err, b)
	}
	return idx.Manifests[0].Digest
}
