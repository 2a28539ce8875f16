package registry

import (
	"context"
	"net/http"
	"testing"

	"github.com/shoal-project/shoal/raftstore"
)

// TestRaftTagStore pushes through the handler into the raft store's FSM
// (without raft: the store applies its own proposals) and reads the image
// back from a second store restored from the first one's snapshot, as a
// manager that joins later would.
func TestRaftTagStore(t *testing.T) {
	store := raftstore.NewMemoryStore(nil, nil)
	tr := newTestRegistry(t, Config{Tags: RaftTagStore{Store: store}})
	tr.pushBlob("a/b", "{}")
	tr.pushBlob("a/b", "layer")
	m := manifestFor("{}", "layer", "")
	expect(t, tr.do("PUT", "/v2/a/b/manifests/v1", m, "Content-Type", MediaTypeOCIManifest), http.StatusCreated, "")
	expect(t, tr.do("PUT", "/v2/a/b/manifests/v2", m, "Content-Type", MediaTypeOCIManifest), http.StatusCreated, "")
	expect(t, tr.do("DELETE", "/v2/a/b/manifests/v2", ""), http.StatusAccepted, "")

	snap, err := store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	other := raftstore.NewMemoryStore(nil, nil)
	if err := other.Restore(snap); err != nil {
		t.Fatal(err)
	}
	repo, err := RaftTagStore{Store: other}.View(context.Background(), "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if len(repo.Tags) != 1 || len(repo.Manifests) != 1 || len(repo.Blobs) != 2 {
		t.Fatalf("restored repository: %+v", repo)
	}
	// A repository emptied of everything leaves no object behind.
	for d := range repo.Blobs {
		expect(t, tr.do("DELETE", "/v2/a/b/blobs/"+d.String(), ""), http.StatusAccepted, "")
	}
	for d := range repo.Manifests {
		expect(t, tr.do("DELETE", "/v2/a/b/manifests/"+d.String(), ""), http.StatusAccepted, "")
	}
	store.View(func(tx raftstore.ReadTx) {
		if n := len(tx.List(raftstore.KindRegistryRepository)); n != 0 {
			t.Errorf("%d repository objects left", n)
		}
	})
}
