package dispatcher

import (
	"bytes"
	"context"
	"testing"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// A session carries the cluster's gossip keys and data port from its first
// message, and a rotation of the keys reaches an open session.
func TestSessionSendsGossipKeys(t *testing.T) {
	h := newHarness(t, nil)
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	h.seed(&api.Cluster{Id: "c1", DataPathPort: 4790, GossipKeys: []*api.GossipKey{{Key: k1}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, stream := h.openSession(ctx, "n1", "")
	if len(msg.GossipKeys) != 1 || !bytes.Equal(msg.GossipKeys[0], k1) || msg.DataPathPort != 4790 {
		t.Fatalf("first message: keys %x, port %d", msg.GossipKeys, msg.DataPathPort)
	}
	if err := h.store.Update(ctx, func(tx raftstore.WriteTx) error {
		c := tx.GetCluster("c1")
		c.GossipKeys = []*api.GossipKey{{Key: k2}, {Key: k1}}
		return tx.Update(c)
	}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("no message with the rotated keys: %v", err)
		}
		if len(m.GossipKeys) == 2 {
			if !bytes.Equal(m.GossipKeys[0], k2) || !bytes.Equal(m.GossipKeys[1], k1) {
				t.Fatalf("rotated keys %x, want the new one first", m.GossipKeys)
			}
			return
		}
	}
}
