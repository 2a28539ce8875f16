package registry

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func (tr *testRegistry) collect(at time.Time) GCStats {
	tr.t.Helper()
	st, err := tr.h.CollectGarbage(tr.t.Context(), at, true)
	if err != nil {
		tr.t.Fatal(err)
	}
	return st
}

func (tr *testRegistry) stored(d digest.Digest) bool {
	_, err := os.Stat(filepath.Join(tr.dir, "blobs", string(d.Algorithm()), d.Encoded()))
	return err == nil
}

func (tr *testRegistry) pushManifest(repo, ref, body string) digest.Digest {
	tr.t.Helper()
	expect(tr.t, tr.do("PUT", "/v2/"+repo+"/manifests/"+ref, body, "Content-Type", MediaTypeOCIManifest), http.StatusCreated, "")
	return digest.FromString(body)
}

// manifestWith is an image manifest of config and layers.
func manifestWith(config string, layers ...string) string {
	ls := ""
	for i, l := range layers {
		if i > 0 {
			ls += ","
		}
		ls += fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, digest.FromString(l), len(l))
	}
	return fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		MediaTypeOCIManifest, digest.FromString(config), len(config), ls)
}

// A manifest deleted by a client frees the blobs only it needed, after the
// grace period; what another manifest needs stays and still pulls.
func TestGarbageCollection(t *testing.T) {
	tr := newTestRegistry(t, Config{GCGrace: time.Hour})
	config, shared, only1, only2 := tr.pushBlob("a", "{}"), tr.pushBlob("a", "shared"), tr.pushBlob("a", "v1 layer"), tr.pushBlob("a", "v2 layer")
	v1 := manifestWith("{}", "v1 layer", "shared")
	m1 := tr.pushManifest("a", "v1", v1)
	m2 := tr.pushManifest("a", "v2", manifestWith("{}", "v2 layer"))
	expect(t, tr.do("DELETE", "/v2/a/manifests/"+m1.String(), ""), http.StatusAccepted, "")

	now := time.Now()
	if st := tr.collect(now); st.Unlinked != 0 || st.Deleted != 0 {
		t.Fatalf("within the grace period a collection did %+v", st)
	}
	st := tr.collect(now.Add(2 * time.Hour))
	if st.Unlinked != 2 || st.Deleted != 1 || !tr.stored(only1) || tr.stored(m1) {
		t.Fatalf("first collection after the grace: %+v; v1's layer stored %v (dropped links wait), v1's manifest stored %v (want gone)", st, tr.stored(only1), tr.stored(m1))
	}
	expect(t, tr.do("HEAD", "/v2/a/blobs/"+only1.String(), ""), http.StatusNotFound, "")
	st = tr.collect(now.Add(4 * time.Hour))
	if st.Deleted != 2 || tr.stored(only1) || tr.stored(shared) {
		t.Fatalf("second collection: %+v; v1's layers stored: %v %v", st, tr.stored(only1), tr.stored(shared))
	}
	for _, d := range []digest.Digest{config, only2, m2} {
		if !tr.stored(d) {
			t.Fatalf("blob %s of the remaining manifest was collected", d)
		}
	}
	expect(t, tr.do("GET", "/v2/a/manifests/v2", ""), http.StatusOK, "")
	expect(t, tr.do("GET", "/v2/a/blobs/"+only2.String(), ""), http.StatusOK, "")
}

// A push that saw a blob linked and skipped its upload gets the link back
// when garbage collection dropped it in between.
func TestGarbageCollectionRelinksForAPush(t *testing.T) {
	tr := newTestRegistry(t, Config{GCGrace: time.Hour})
	tr.pushBlob("a", "{}")
	layer := tr.pushBlob("a", "layer")
	now := time.Now()
	if st := tr.collect(now.Add(2 * time.Hour)); st.Unlinked != 2 {
		t.Fatalf("collection: %+v, want both unreferenced links dropped", st)
	}
	tr.pushManifest("a", "t", manifestFor("{}", "layer", ""))
	if st := tr.collect(now.Add(4 * time.Hour)); st.Deleted != 0 || !tr.stored(layer) {
		t.Fatalf("collection after the push: %+v; layer stored %v", st, tr.stored(layer))
	}
	expect(t, tr.do("GET", "/v2/a/blobs/"+layer.String(), ""), http.StatusOK, "")
	// Past the grace period the dropped link is gone for good.
	tr.pushBlob("b", "orphan")
	tr.collect(now.Add(6 * time.Hour))
	tr.collect(now.Add(8 * time.Hour))
	expect(t, tr.do("PUT", "/v2/b/manifests/t", manifestFor("{}", "orphan", ""), "Content-Type", MediaTypeOCIManifest), http.StatusBadRequest, codeManifestBlobUnknown)
}

// Pushes while collections run back to back: every acknowledged image stays
// whole. The grace period is short so that blobs of earlier pushes are
// collectable while later ones run.
func TestGarbageCollectionDuringPushes(t *testing.T) {
	tr := newTestRegistry(t, Config{GCGrace: 300 * time.Millisecond})
	stop := make(chan struct{})
	var gc sync.WaitGroup
	gc.Add(1)
	collections := 0
	go func() {
		defer gc.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := tr.h.CollectGarbage(t.Context(), time.Now(), true); err != nil {
				t.Error(err)
				return
			}
			collections++
		}
	}()
	var wg sync.WaitGroup
	pushed := make([][]string, 4)
	for w := range pushed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				repo := fmt.Sprintf("r%d", w)
				// The same config in every image, and a layer that an
				// earlier, deleted image of this pusher had: both are
				// candidates for collection while they are pushed again.
				layer := fmt.Sprintf("layer %d %d", w, i/3)
				tr.pushBlob(repo, "{}")
				tr.pushBlob(repo, layer)
				m := manifestFor("{}", layer, "")
				tr.pushManifest(repo, "t", m)
				pushed[w] = append(pushed[w], layer)
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	gc.Wait()
	if collections < 3 {
		t.Fatalf("only %d collections ran during the pushes", collections)
	}
	for w, layers := range pushed {
		repo := fmt.Sprintf("r%d", w)
		last := layers[len(layers)-1]
		expect(t, tr.do("GET", "/v2/"+repo+"/manifests/t", ""), http.StatusOK, "")
		expect(t, tr.do("GET", "/v2/"+repo+"/blobs/"+digest.FromString(last).String(), ""), http.StatusOK, "")
		expect(t, tr.do("GET", "/v2/"+repo+"/blobs/"+digest.FromString("{}").String(), ""), http.StatusOK, "")
	}
	t.Logf("%d collections during %d pushes", collections, 4*15)
}
