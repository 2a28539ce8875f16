package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterRegistryGC: with collections every second and a 3 s grace
// period, an image whose manifest a client deleted (skopeo delete) loses its
// own layer on every manager, while the image beside it keeps all of its
// blobs everywhere and still copies out of another manager, whole.
func TestClusterRegistryGC(t *testing.T) {
	needSkopeo(t)
	c := newSwarm(t, 3, 0)
	for _, m := range c.managers {
		m.Daemon.Restart("--registry-gc-interval", "1s", "--registry-gc-grace", "3s")
	}
	m1, m2 := c.managers[0], c.managers[1]
	c.leader(t, m1)
	// After a restart of every manager the leadership can still move once
	// (a manager that comes back late calls an election); a call in that
	// moment is refused "no leader", which is not what this test is about.
	var token string
	waitFor(t, "a registry token from manager 1", func() bool {
		r := m1.Daemon.Run("swarm", "registry-token")
		token = strings.TrimSpace(r.Stdout)
		return r.Code == 0 && token != ""
	})
	dir := t.TempDir()
	userCerts := filepath.Join(dir, "user")
	writeFiles(t, userCerts, map[string][]byte{"ca.crt": []byte(must(t, m1, "swarm", "ca"))})
	creds := "anyone:" + token
	ref := func(h *harness.Host, tag string) string { return "docker://" + h.IP + ":5000/test/gc:" + tag }
	waitFor(t, "manager 1's registry", func() bool { return registryUp(m1) })
	layouts := map[string]string{}
	for _, tag := range []string{"gone", "kept"} {
		layouts[tag] = filepath.Join(dir, tag)
		makeOCILayout(t, layouts[tag], tag)
		mustSkopeo(t, m1, "copy", "--preserve-digests", "--dest-creds", creds, "--dest-cert-dir", userCerts, "oci:"+layouts[tag]+":"+tag, ref(m1, tag))
	}
	blobs := func(tag string) []digest.Digest {
		ents, err := os.ReadDir(filepath.Join(layouts[tag], "blobs", "sha256"))
		if err != nil {
			t.Fatal(err)
		}
		var ds []digest.Digest
		for _, e := range ents {
			ds = append(ds, digest.NewDigestFromEncoded(digest.SHA256, e.Name()))
		}
		return ds
	}
	stored := func(h *harness.Host, d digest.Digest) bool {
		_, err := os.Stat(filepath.Join(h.Daemon.Root, "swarm", "registry", "blobs", "blobs", "sha256", d.Encoded()))
		return err == nil
	}
	for _, m := range c.managers {
		for _, tag := range []string{"gone", "kept"} {
			for _, d := range blobs(tag) {
				if !stored(m, d) {
					t.Fatalf("%s lacks blob %s of %s right after the push", m.Name, d, tag)
				}
			}
		}
	}
	mustSkopeo(t, m1, "delete", "--creds", creds, "--cert-dir", userCerts, ref(m1, "gone"))
	// The grace period runs twice: once for the link, once for the
	// dropped link; 20 s allows for a loaded machine.
	deadline := time.Now().Add(25 * time.Second)
	for _, m := range c.managers {
		for _, d := range blobs("gone") {
			for stored(m, d) && time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
			}
			if stored(m, d) {
				t.Fatalf("%s still holds blob %s of the deleted image", m.Name, d)
			}
		}
		for _, d := range blobs("kept") {
			if !stored(m, d) {
				t.Fatalf("%s collected blob %s of the image still tagged", m.Name, d)
			}
		}
	}
	out := filepath.Join(dir, "out")
	mustSkopeo(t, m2, "copy", "--preserve-digests", "--src-creds", creds, "--src-cert-dir", userCerts, ref(m2, "kept"), "oci:"+out+":kept")
	if got, want := layoutManifest(t, out), layoutManifest(t, layouts["kept"]); got != want {
		t.Fatalf("copied out manifest %s, pushed %s", got, want)
	}
}
