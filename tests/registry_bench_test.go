package tests

// The registry benchmark (issue 8), run by bench/run.sh's `registry` section
// as `go test -run '^$' -bench Registry -benchtime 1x ./tests/`: our figure
// beside an anchor measured in the same run, as a ratio; it fails only when
// something it measures does not work.
//
// Knobs: BENCH_REGISTRY_MB (200) image size, BENCH_REGISTRY_LAYERS (4),
// BENCH_REGISTRY_PULLERS (9) test hosts that pull at once (besides the
// manager).

import (
	"archive/tar"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/tests/harness"
)

// BenchmarkRegistryPushPull: a swarm of one manager and BENCH_REGISTRY_PULLERS
// workers, and an image of BENCH_REGISTRY_MB of random bytes (not
// compressible) in BENCH_REGISTRY_LAYERS layers, written here as an OCI
// layout (gzip streams of stored blocks: the bytes do not shrink, and
// gzip costs no CPU to write). Measured, each once:
//
//   - push with `skopeo copy oci:... docker://` into the cluster registry
//     (MANAGER:5000, TLS with the cluster CA, the user token) beside the same
//     into Debian's docker-registry in the manager's namespace (127.0.0.1,
//     plain HTTP: it has no TLS set up here, so it is spared TLS's cost);
//   - `shoal pull` on the manager from each of the two, and `skopeo copy
//     docker://... dir:` from the cluster registry (what skopeo can do with
//     the same registry, without unpacking: shoal pull also unpacks);
//   - the pullers' `shoal pull` from the cluster registry one after the other
//     beside all at once (one manager serves them all).
//
// The daemons trust the cluster CA through SSL_CERT_FILE (set before they
// start; Go reads it at the first verification, after swarm init wrote the
// CA there): shoal pull checks the registry's certificate as it would a
// public one's.
func BenchmarkRegistryPushPull(b *testing.B) {
	b.StopTimer()
	for _, bin := range []string{"skopeo", "docker-registry"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Fatalf("%s is missing (make deps installs it): %v", bin, err)
		}
	}
	mb := benchEnvInt(b, "BENCH_REGISTRY_MB", 200)
	nl := benchEnvInt(b, "BENCH_REGISTRY_LAYERS", 4)
	np := benchEnvInt(b, "BENCH_REGISTRY_PULLERS", 9)
	dir := b.TempDir()
	caFile := filepath.Join(dir, "cluster-ca.pem")
	b.Setenv("SSL_CERT_FILE", caFile)
	s := newSwarm(b, 1, np)
	m := s.managers[0]
	token := strings.TrimSpace(m.Daemon.Must("swarm", "registry-token"))
	caPEM := m.Daemon.Must("swarm", "ca")
	certs := filepath.Join(dir, "certs")
	writeFiles(b, certs, map[string][]byte{"ca.crt": []byte(caPEM)})
	writeFiles(b, dir, map[string][]byte{"cluster-ca.pem": []byte(caPEM)})
	creds := "anyone:" + token

	layout := filepath.Join(dir, "layout")
	size := benchBigLayout(b, layout, "v1", nl, int64(mb)<<20)
	reg := startRegistryIn(b, m, "127.0.0.1", nil)
	// The same registry over TLS: the cluster registry serves TLS only, so
	// this is the like-for-like anchor of the push (a self-signed
	// certificate for 127.0.0.1; no auth on either anchor: htpasswd's
	// bcrypt per request would slow docker-registry far more than TLS).
	tlsCerts := filepath.Join(dir, "tls-certs")
	certFile, keyFile := selfSignedCert(b, tlsCerts, "127.0.0.1")
	regTLS := startRegistryTLS(b, m, "127.0.0.1", nil, certFile, keyFile)
	tlsRef := regTLS.Addr + "/bench/big:v1"
	clusterReg := m.IP + ":5000"
	waitFor(b, "the manager's registry", func() bool {
		conn, err := m.DialTimeout("tcp", clusterReg, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	clusterRef, plainRef := clusterReg+"/bench/big:v1", reg.Addr+"/bench/big:v1"
	for _, h := range s.Hosts {
		if r := h.Daemon.RunStdin([]byte(token), "login", "-u", "anyone", "--password-stdin", clusterReg); r.Code != 0 {
			b.Fatalf("shoal login %s on %s: %s", clusterReg, h.Name, r)
		}
	}
	timed := func(h *harness.Host, what string, args ...string) time.Duration {
		b.Helper()
		t0 := time.Now()
		r := h.Exec(args...)
		took := time.Since(t0)
		if r.Code != 0 {
			b.Fatalf("%s: %s on %s: %s", what, strings.Join(args, " "), h.Name, r)
		}
		return took
	}
	skopeo := func(args ...string) []string { return append([]string{"skopeo", "--command-timeout", "300s"}, args...) }
	pull := func(h *harness.Host, ref string) time.Duration {
		b.Helper()
		t0 := time.Now()
		h.Daemon.Must("pull", "-q", ref)
		return time.Since(t0)
	}
	rmi := func(h *harness.Host, ref string) {
		b.Helper()
		h.Daemon.Must("rmi", ref)
	}
	load := benchLoadavg()

	b.StartTimer()
	pushPlain := timed(m, "push to docker-registry", skopeo("copy", "--dest-tls-verify=false", "oci:"+layout+":v1", "docker://"+plainRef)...)
	pushTLS := timed(m, "push to docker-registry over TLS", skopeo("copy", "--dest-cert-dir", tlsCerts, "oci:"+layout+":v1", "docker://"+tlsRef)...)
	pushOurs := timed(m, "push to the cluster registry", skopeo("copy", "--dest-creds", creds, "--dest-cert-dir", certs, "oci:"+layout+":v1", "docker://"+clusterRef)...)
	pullPlain := pull(m, plainRef)
	rmi(m, plainRef)
	pullOurs := pull(m, clusterRef)
	rmi(m, clusterRef)
	skopeoOurs := timed(m, "skopeo copy from the cluster registry", skopeo("copy", "--src-creds", creds, "--src-cert-dir", certs, "docker://"+clusterRef, "dir:"+filepath.Join(dir, "out-ours"))...)
	skopeoPlain := timed(m, "skopeo copy from docker-registry", skopeo("copy", "--src-tls-verify=false", "docker://"+plainRef, "dir:"+filepath.Join(dir, "out-plain"))...)
	os.RemoveAll(filepath.Join(dir, "out-ours"))
	os.RemoveAll(filepath.Join(dir, "out-plain"))

	// N pulls one after the other, then (the images removed) all at once.
	pullers := s.workers
	t0 := time.Now()
	for _, h := range pullers {
		pull(h, clusterRef)
	}
	seq := time.Since(t0)
	for _, h := range pullers {
		rmi(h, clusterRef)
	}
	errs := make([]string, len(pullers))
	each := make([]time.Duration, len(pullers))
	var wg sync.WaitGroup
	t0 = time.Now()
	for i, h := range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := time.Now()
			if r := h.Daemon.Run("pull", "-q", clusterRef); r.Code != 0 {
				errs[i] = h.Name + ": " + r.String()
			}
			each[i] = time.Since(s)
		}()
	}
	wg.Wait()
	par := time.Since(t0)
	b.StopTimer()
	for _, e := range errs {
		if e != "" {
			b.Fatalf("%d pulls of %s at once: %v", len(pullers), clusterRef, errs)
		}
	}
	b.Logf("each of the %d pulls at once took %v", len(pullers), each)

	mbs := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	b.ReportMetric(pushOurs.Seconds(), "s-push")
	b.ReportMetric(pullOurs.Seconds(), "s-pull")
	fmt.Printf("registry image: %d MiB in %d layers of random bytes; %d pullers; load %s\n", size>>20, nl, len(pullers), load)
	benchLine("registry push, skopeo -> docker-registry (anchor)", sec(pushPlain), "s", fmt.Sprintf("%.0f MiB/s; plain HTTP on 127.0.0.1", mbs(pushPlain)))
	benchLine("registry push, skopeo -> docker-registry over TLS (anchor)", sec(pushTLS), "s", fmt.Sprintf("%.0f MiB/s; TLS on 127.0.0.1, no auth", mbs(pushTLS)))
	benchLine("registry push, skopeo -> cluster registry", sec(pushOurs), "s",
		fmt.Sprintf("%.0f MiB/s; TLS, token; %s of docker-registry's time over TLS, %s of plain HTTP's; target <= 1.0x",
			mbs(pushOurs), benchRatio(pushOurs.Seconds(), pushTLS.Seconds()), benchRatio(pushOurs.Seconds(), pushPlain.Seconds())))
	benchLine("registry shoal pull <- docker-registry (anchor)", sec(pullPlain), "s", fmt.Sprintf("%.0f MiB/s; pulled and unpacked", mbs(pullPlain)))
	benchLine("registry shoal pull <- cluster registry", sec(pullOurs), "s",
		fmt.Sprintf("%.0f MiB/s; %s of the time from docker-registry; target <= 1.0x", mbs(pullOurs), benchRatio(pullOurs.Seconds(), pullPlain.Seconds())))
	benchLine("registry skopeo copy dir: <- docker-registry", sec(skopeoPlain), "s", fmt.Sprintf("%.0f MiB/s; no unpacking", mbs(skopeoPlain)))
	benchLine("registry skopeo copy dir: <- cluster registry (anchor)", sec(skopeoOurs), "s", fmt.Sprintf("%.0f MiB/s; no unpacking", mbs(skopeoOurs)))
	benchLine("registry shoal pull <- cluster registry, vs skopeo", sec(pullOurs), "s",
		fmt.Sprintf("%s of skopeo copy from the same registry (shoal pull unpacks too)", benchRatio(pullOurs.Seconds(), skopeoOurs.Seconds())))
	benchLine(fmt.Sprintf("registry %d shoal pulls one after another (anchor)", len(pullers)), sec(seq), "s", fmt.Sprintf("%.0f MiB/s served", mbs(seq)*float64(len(pullers))))
	benchLine(fmt.Sprintf("registry %d shoal pulls at once, one manager", len(pullers)), sec(par), "s",
		fmt.Sprintf("%.0f MiB/s served; %s of one after another; target < 1.0x", mbs(par)*float64(len(pullers)), benchRatio(par.Seconds(), seq.Seconds())))
}

// benchBigLayout writes an OCI image layout at dir, tagged tag: layers
// layers of one file of random bytes each, total bytes in all, each a tar
// in a gzip stream of stored (uncompressed) blocks. It returns the bytes of
// the layer blobs.
func benchBigLayout(b testing.TB, dir, tag string, layers int, total int64) int64 {
	b.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		b.Fatal(err)
	}
	put := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), data, 0o644); err != nil {
			b.Fatal(err)
		}
		return d
	}
	var sum int64
	var diffIDs []string
	var descs []any
	for i := 0; i < layers; i++ {
		n := total / int64(layers)
		tmp := filepath.Join(blobs, "tmp")
		f, err := os.Create(tmp)
		if err != nil {
			b.Fatal(err)
		}
		blobHash, diffHash := sha256.New(), sha256.New()
		counted := &countWriter{w: io.MultiWriter(f, blobHash)}
		zw, _ := gzip.NewWriterLevel(counted, gzip.NoCompression)
		tw := tar.NewWriter(io.MultiWriter(zw, diffHash))
		err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("blob%d", i), Mode: 0o644, Size: n, Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.CopyN(tw, rand.Reader, n)
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatalf("layer %d: %v", i, err)
		}
		d := "sha256:" + hex.EncodeToString(blobHash.Sum(nil))
		if err := os.Rename(tmp, filepath.Join(blobs, strings.TrimPrefix(d, "sha256:"))); err != nil {
			b.Fatal(err)
		}
		sum += counted.n
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(diffHash.Sum(nil)))
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": counted.n})
	}
	ociImageLayout(b, dir, tag, put, descs, diffIDs, "/blob0")
	return sum
}

// ociImageLayout writes the config (running cmd) and manifest of an image
// of layers (descriptors; diffIDs their uncompressed digests) with put,
// and the layout's index.json naming the manifest tag; it returns the
// manifest's digest.
func ociImageLayout(t testing.TB, dir, tag string, put func([]byte) digest.Digest, layers []any, diffIDs []string, cmd string) digest.Digest {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{cmd}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	cfgD := put(cfg)
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgD, "size": len(cfg)},
		"layers": layers,
	})
	manD := put(man)
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manD, "size": len(man),
			"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	})
	writeFiles(t, dir, map[string][]byte{"index.json": idx, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	return manD
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// selfSignedCert writes a self-signed certificate for ip and its key into
// dir (cert.pem, key.pem, and the certificate again as ca.crt, for
// skopeo's --cert-dir) and returns the two PEM paths.
func selfSignedCert(t testing.TB, dir, ip string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: ip},
		IPAddresses: []net.IP{net.ParseIP(ip)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	writeFiles(t, dir, map[string][]byte{
		"cert.pem": certPEM, "ca.crt": certPEM,
		"key.pem": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	})
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}
