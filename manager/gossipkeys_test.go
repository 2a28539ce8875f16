package manager

import (
	"bytes"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The key list over a rotation: a first key at once, none added while it is
// young, a new one first once it is GossipKeyRotation old, the previous one
// kept for GossipKeyOverlap and dropped after.
func TestNextGossipKeys(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	keys, changed, err := nextGossipKeys(nil, t0)
	if err != nil || !changed || len(keys) != 1 || len(keys[0].Key) != 32 || bytes.Equal(keys[0].Key, make([]byte, 32)) {
		t.Fatalf("first key: %v changed=%v err=%v", keys, changed, err)
	}
	first := keys[0].Key
	if _, changed, _ := nextGossipKeys(keys, t0.Add(GossipKeyRotation-time.Second)); changed {
		t.Fatal("a young key was rotated")
	}
	keys, changed, _ = nextGossipKeys(keys, t0.Add(GossipKeyRotation))
	if !changed || len(keys) != 2 || !bytes.Equal(keys[1].Key, first) || bytes.Equal(keys[0].Key, first) {
		t.Fatalf("rotation: %v", keys)
	}
	t1 := keys[0].CreatedAt.AsTime()
	if _, changed, _ := nextGossipKeys(keys, t1.Add(GossipKeyOverlap-time.Second)); changed {
		t.Fatal("the previous key was dropped during the overlap")
	}
	keys, changed, _ = nextGossipKeys(keys, t1.Add(GossipKeyOverlap))
	if !changed || len(keys) != 1 || bytes.Equal(keys[0].Key, first) {
		t.Fatalf("after the overlap: %v", keys)
	}
	// Left over from a leader that died mid-way: more than two keys.
	old := []*api.GossipKey{{Key: first, CreatedAt: timestamppb.New(t0)}, {Key: first}, {Key: first}}
	if keys, _, _ := nextGossipKeys(old, t0.Add(time.Hour)); len(keys) != 1 {
		t.Fatalf("extra keys kept: %d", len(keys))
	}
}
