package manager

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The overlay's gossip keys (Cluster.gossip_keys): the leader makes a new
// one every GossipKeyRotation and keeps the previous one for
// GossipKeyOverlap after that, so that a node still encrypting with it
// (its session has not brought the new key yet) is still understood.
const (
	GossipKeyRotation = 6 * time.Hour
	GossipKeyOverlap  = 30 * time.Minute
	// gossipKeySize is memberlist's AES-256 key size.
	gossipKeySize = 32
	// gossipKeyCheck is how often the leader looks at the keys' ages.
	gossipKeyCheck = time.Minute
	// gossipKeyRetry is the wait while the cluster has no key.
	gossipKeyRetry = 200 * time.Millisecond
)

// reconcileGossipKeys runs on the leader: it gives the cluster a gossip key
// at once and rotates it on time.
func (m *Manager) reconcileGossipKeys(ctx context.Context) error {
	for {
		wait := gossipKeyCheck
		if err := m.rotateGossipKeys(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("manager: gossip key rotation", "err", err)
		}
		if c := m.cluster(); len(c.GetGossipKeys()) == 0 {
			// No cluster object yet (swarm init writes it after this
			// leader's first term starts), or the write failed: nodes wait
			// for the key to run overlay tasks, so try again soon.
			wait = gossipKeyRetry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// rotateGossipKeys writes the cluster's keys if nextGossipKeys changes them.
func (m *Manager) rotateGossipKeys(ctx context.Context) error {
	now := m.now()
	err := m.store.Update(ctx, func(tx raftstore.WriteTx) error {
		cs := tx.Clusters()
		if len(cs) == 0 {
			return nil
		}
		c := cs[0]
		keys, changed, err := nextGossipKeys(c.GetGossipKeys(), now)
		if err != nil || !changed {
			return err
		}
		c.GossipKeys = keys
		return tx.Update(c)
	})
	if err != nil {
		return fmt.Errorf("rotate gossip keys: %w", err)
	}
	return nil
}

// nextGossipKeys is the key list the cluster should have at now, given
// keys (newest first): a new key first when there is none or the newest is
// GossipKeyRotation old, and the previous one only while the newest is
// younger than GossipKeyOverlap.
func nextGossipKeys(keys []*api.GossipKey, now time.Time) ([]*api.GossipKey, bool, error) {
	changed := false
	if len(keys) == 0 || now.Sub(keys[0].GetCreatedAt().AsTime()) >= GossipKeyRotation {
		k := make([]byte, gossipKeySize)
		if _, err := rand.Read(k); err != nil {
			return nil, false, fmt.Errorf("new gossip key: %w", err)
		}
		keys = append([]*api.GossipKey{{Key: k, CreatedAt: timestamppb.New(now)}}, keys...)
		changed = true
	}
	keep := 1
	if len(keys) > 1 && now.Sub(keys[0].GetCreatedAt().AsTime()) < GossipKeyOverlap {
		keep = 2
	}
	if len(keys) > keep {
		keys = keys[:keep]
		changed = true
	}
	return keys, changed, nil
}
