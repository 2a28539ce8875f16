package daemon

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

func TestNewOverlayNodeNeedsConcreteIPv4(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:2377", "[::1]:2377", "node1:2377", ""} {
		if _, err := newOverlayNode(t.TempDir(), "n1", addr); err == nil {
			t.Errorf("advertise address %q accepted", addr)
		}
	}
	o, err := newOverlayNode(t.TempDir(), "n1", "198.18.0.1:2377")
	if err != nil || !o.addr.Equal([]byte{198, 18, 0, 1}) {
		t.Fatalf("198.18.0.1:2377: %v, %v", o, err)
	}
}

// A session message without keys changes nothing; one with keys names the
// other managers as gossip hosts (not this node).
func TestOverlayNodeFollow(t *testing.T) {
	o, err := newOverlayNode(t.TempDir(), "n1", "198.18.0.1:2377")
	if err != nil {
		t.Fatal(err)
	}
	mgrs := []*api.WeightedPeer{{Addr: "198.18.0.1:2377"}, {Addr: "198.18.0.2:2377"}}
	o.follow(&api.SessionMessage{Managers: mgrs})
	if o.want != nil {
		t.Fatalf("settings without a key: %+v", o.want)
	}
	o.follow(&api.SessionMessage{Managers: mgrs, GossipKeys: [][]byte{make([]byte, 32)}, DataPathPort: 4790})
	if o.want == nil || o.want.port != 4790 || len(o.want.keys) != 1 || !slices.Equal(o.want.managers, []string{"198.18.0.2"}) {
		t.Fatalf("settings: %+v", o.want)
	}
}

// Until a key came, attaching a task on networks waits (and gives up with
// its context); a task without networks needs nothing.
func TestOverlayNodeAttachWaitsForKey(t *testing.T) {
	o, err := newOverlayNode(t.TempDir(), "n1", "198.18.0.1:2377")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Attach(context.Background(), &api.Task{Id: "t0"}); err != nil {
		t.Fatalf("task without networks: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = o.Attach(ctx, &api.Task{Id: "t1", Networks: []*api.NetworkAttachment{{}}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("attach before a key = %v, want the context's deadline", err)
	}
}
