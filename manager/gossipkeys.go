package manager

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/controlapi"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The overlay's gossip keys (Cluster.gossip_keys), the cluster's data keys:
// the leader makes a new one every rotation period (ClusterSpec's
// data_key_rotation, controlapi.DataKeyRotation) and keeps the previous one
// for gossipKeyOverlap(period) after that, so that a node still encrypting
// with it (its session has not brought the new key yet) is still
// understood.
const (
	// maxGossipKeyOverlap is the overlap of the default 6h period.
	maxGossipKeyOverlap = 30 * time.Minute
	// gossipKeySize is memberlist's AES-256 key size.
	gossipKeySize = 32
	// gossipKeyCheck is how often the leader looks at the keys' ages at
	// most; a short period is looked at more often (gossipKeyWait).
	gossipKeyCheck = time.Minute
	// gossipKeyRetry is the wait while the cluster has no key.
	gossipKeyRetry = 200 * time.Millisecond
)

// gossipKeyOverlap is how long the previous key is kept after a rotation
// period's new one: half the period, at most maxGossipKeyOverlap. At the
// shortest period (controlapi.MinDataKeyRotation) that is 30s, far longer
// than a node takes to get the new key (its session pushes the cluster's
// change at once; heartbeats are a second apart).
func gossipKeyOverlap(period time.Duration) time.Duration {
	return min(maxGossipKeyOverlap, period/2)
}

// gossipKeyWait is how long the leader sleeps between looks at the keys: a
// twentieth of the period (3s at 1m, so a rotation is at most that late),
// at most gossipKeyCheck.
func gossipKeyWait(period time.Duration) time.Duration {
	return max(time.Second, min(gossipKeyCheck, period/20))
}

// reconcileGossipKeys runs on the leader: it gives the cluster a gossip key
// at once and rotates it on time.
func (m *Manager) reconcileGossipKeys(ctx context.Context) error {
	for {
		if err := m.rotateGossipKeys(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("manager: gossip key rotation", "err", err)
		}
		c := m.cluster()
		wait := gossipKeyWait(controlapi.DataKeyRotation(c.GetSpec()))
		if len(c.GetGossipKeys()) == 0 {
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
	if c := m.cluster(); c != nil && !gossipKeysDue(c.GetGossipKeys(), now, controlapi.DataKeyRotation(c.GetSpec())) {
		// Most looks change nothing: they cost a read, not a raft write.
		return nil
	}
	err := m.store.Update(ctx, func(tx raftstore.WriteTx) error {
		cs := tx.Clusters()
		if len(cs) == 0 {
			return nil
		}
		c := cs[0]
		keys, changed, err := nextGossipKeys(c.GetGossipKeys(), now, controlapi.DataKeyRotation(c.GetSpec()))
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

// gossipKeysDue reports whether nextGossipKeys would change keys at now.
func gossipKeysDue(keys []*api.GossipKey, now time.Time, period time.Duration) bool {
	if len(keys) == 0 {
		return true
	}
	age := now.Sub(keys[0].GetCreatedAt().AsTime())
	return age >= period || len(keys) > 2 || (len(keys) == 2 && age >= gossipKeyOverlap(period))
}

// nextGossipKeys is the key list the cluster should have at now, given
// keys (newest first) and the rotation period: a new key first when there
// is none or the newest is period old, and the previous one only while the
// newest is younger than gossipKeyOverlap(period).
func nextGossipKeys(keys []*api.GossipKey, now time.Time, period time.Duration) ([]*api.GossipKey, bool, error) {
	changed := false
	if len(keys) == 0 || now.Sub(keys[0].GetCreatedAt().AsTime()) >= period {
		k := make([]byte, gossipKeySize)
		if _, err := rand.Read(k); err != nil {
			return nil, false, fmt.Errorf("new gossip key: %w", err)
		}
		keys = append([]*api.GossipKey{{Key: k, CreatedAt: timestamppb.New(now)}}, keys...)
		changed = true
	}
	keep := 1
	if len(keys) > 1 && now.Sub(keys[0].GetCreatedAt().AsTime()) < gossipKeyOverlap(period) {
		keep = 2
	}
	if len(keys) > keep {
		keys = keys[:keep]
		changed = true
	}
	return keys, changed, nil
}
