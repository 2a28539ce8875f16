package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/heartbeat"
)

// TestFastPathBeatsKeepNodeAlive: a node that beats only through the fast
// path's table (no gRPC heartbeat at all) stays READY past its deadline,
// goes DOWN a grace after its last beat there, and its slot answers no
// more once the session ended.
func TestFastPathBeatsKeepNodeAlive(t *testing.T) {
	tab, err := heartbeat.NewTable(16)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	tab.SetPeriod(time.Second)
	tab.Vouch(time.Unix(1<<32, 0))
	h := newHarness(t, func(c *Config) { c.Beats, c.BeatAddr = tab, "198.18.0.1:2377" })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, stream := h.openSession(ctx, "n1", "")
	h.waitNode("n1", api.NodeStatus_READY)
	if msg.GetBeatAddr() != "198.18.0.1:2377" || len(msg.GetBeatKey()) != api.BeatKeySize || msg.GetBeatGeneration() == 0 {
		t.Fatalf("session message without the fast path: address %q, key %d bytes, generation %d",
			msg.GetBeatAddr(), len(msg.GetBeatKey()), msg.GetBeatGeneration())
	}
	beat := func(seq uint64) []byte {
		return tab.Accept(api.Beat{Slot: msg.GetBeatSlot(), Generation: msg.GetBeatGeneration(), Seq: seq,
			Sent: h.clock.Now().UnixNano()}.Seal(nil, msg.GetBeatKey()), h.clock.Now())
	}
	// 8 s of beats every second, none over gRPC: twice the 3 s deadline.
	for seq := uint64(1); seq <= 8; seq++ {
		if beat(seq) == nil {
			t.Fatalf("beat %d not answered", seq)
		}
		h.clock.drainTimers()
		h.clock.Advance(time.Second)
		if seq%3 == 0 {
			// A deadline has fallen due: let the watcher look.
			h.clock.awaitTimer(t)
		}
		if s := h.nodeState("n1"); s != api.NodeStatus_READY {
			t.Fatalf("node %v after %d s of fast-path beats", s, seq)
		}
	}
	// Silence: DOWN a grace after the last beat.
	h.clock.Advance(2100 * time.Millisecond)
	h.waitNode("n1", api.NodeStatus_DOWN)
	// The stream ends (after any node update queued before the expiry).
	for i := 0; ; i++ {
		if _, err := stream.Recv(); err != nil {
			break
		}
		if i == 10 {
			t.Fatal("session stream still open after expiry")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for seq := uint64(100); beat(seq) != nil; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("the ended session's slot still answers")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
