package manager

import (
	"bytes"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/controlapi"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The key list over two rotations, at the default period, the shortest and
// the longest: a first key at once, none added while it is young, a new one
// first once it is period old, the previous one kept for the overlap and
// dropped after. gossipKeysDue agrees with nextGossipKeys at every step.
func TestNextGossipKeys(t *testing.T) {
	for _, period := range []time.Duration{controlapi.DefaultDataKeyRotation, controlapi.MinDataKeyRotation, controlapi.MaxDataKeyRotation, 90 * time.Second} {
		t.Run(period.String(), func(t *testing.T) {
			next := func(keys []*api.GossipKey, now time.Time) ([]*api.GossipKey, bool) {
				t.Helper()
				due := gossipKeysDue(keys, now, period)
				out, changed, err := nextGossipKeys(keys, now, period)
				if err != nil {
					t.Fatal(err)
				}
				if due != changed {
					t.Fatalf("at %s: gossipKeysDue %v, nextGossipKeys changed %v", now, due, changed)
				}
				return out, changed
			}
			overlap := gossipKeyOverlap(period)
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			keys, changed := next(nil, t0)
			if !changed || len(keys) != 1 || len(keys[0].Key) != 32 || bytes.Equal(keys[0].Key, make([]byte, 32)) {
				t.Fatalf("first key: %v changed=%v", keys, changed)
			}
			prev, start := keys[0].Key, t0
			for round := 0; round < 2; round++ {
				if _, changed := next(keys, start.Add(period-time.Second)); changed {
					t.Fatalf("round %d: a key %s old was rotated", round, period-time.Second)
				}
				keys, changed = next(keys, start.Add(period))
				if !changed || len(keys) != 2 || !bytes.Equal(keys[1].Key, prev) || bytes.Equal(keys[0].Key, prev) {
					t.Fatalf("round %d: rotation: %v", round, keys)
				}
				start = keys[0].CreatedAt.AsTime()
				if _, changed := next(keys, start.Add(overlap-time.Second)); changed {
					t.Fatalf("round %d: the previous key was dropped during the overlap", round)
				}
				keys, changed = next(keys, start.Add(overlap))
				if !changed || len(keys) != 1 || bytes.Equal(keys[0].Key, prev) {
					t.Fatalf("round %d: after the overlap: %v", round, keys)
				}
				prev = keys[0].Key
			}
			// Left over from a leader that died mid-way: more than two keys;
			// the overlap also bounds the previous key's stay.
			if keys, _ := next([]*api.GossipKey{{Key: prev, CreatedAt: timestamppb.New(t0)}, {Key: prev}, {Key: prev}}, t0.Add(time.Second)); len(keys) != 2 {
				t.Fatalf("three keys during the overlap: %d kept, want 2", len(keys))
			}
			old := []*api.GossipKey{{Key: prev, CreatedAt: timestamppb.New(t0)}, {Key: prev}, {Key: prev}}
			if keys, _ := next(old, t0.Add(overlap)); len(keys) != 1 {
				t.Fatalf("extra keys kept: %d", len(keys))
			}
		})
	}
}

// The overlap follows the period (half of it, at most 30m) and stays far
// above the time a node needs to learn a new key (pushed by its session at
// once; a few heartbeats if the session must reconnect); the leader looks at
// the keys often enough that a rotation is late by a small part of the
// period only.
func TestGossipKeyTimes(t *testing.T) {
	for _, c := range []struct{ period, overlap, wait time.Duration }{
		{time.Minute, 30 * time.Second, 3 * time.Second},
		{10 * time.Minute, 5 * time.Minute, 30 * time.Second},
		{time.Hour, 30 * time.Minute, time.Minute},
		{6 * time.Hour, 30 * time.Minute, time.Minute},
		{12 * time.Hour, 30 * time.Minute, time.Minute},
	} {
		if got := gossipKeyOverlap(c.period); got != c.overlap {
			t.Errorf("overlap of %s: %s, want %s", c.period, got, c.overlap)
		}
		if got := gossipKeyWait(c.period); got != c.wait {
			t.Errorf("wait of %s: %s, want %s", c.period, got, c.wait)
		}
	}
	// A node learns a key within a few heartbeats; the shortest overlap
	// must leave a wide margin over that.
	if o, learn := gossipKeyOverlap(controlapi.MinDataKeyRotation), 10*controlapi.FixedHeartbeatPeriod; o < learn {
		t.Errorf("overlap at the shortest period %s is %s, under the %s a node may need to learn a key", controlapi.MinDataKeyRotation, o, learn)
	}
}
