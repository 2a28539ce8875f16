package manager

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/shoal-project/shoal/api"
)

// TestFollowUnlockKeyIgnoresReplay: a restarted manager replays cluster
// objects older than its seal (a snapshot from before autolock, a key
// since rotated out); they must not reseal its data key, newer ones must.
func TestFollowUnlockKeyIgnoresReplay(t *testing.T) {
	key, next := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	type seal struct {
		key []byte
		at  uint64
	}
	var seals []seal
	m := &Manager{log: slog.New(slog.DiscardHandler), lockKey: key, lockedAt: 10}
	m.cfg.SealDEK = func(k []byte, v uint64) error { seals = append(seals, seal{k, v}); return nil }
	cluster := func(k []byte, v uint64) *api.Cluster {
		return &api.Cluster{Meta: &api.Meta{Version: v}, UnlockKey: k}
	}
	m.followUnlockKey(cluster(nil, 5))  // replayed: before autolock
	m.followUnlockKey(cluster(key, 10)) // the object the seal follows
	if len(seals) != 0 {
		t.Fatalf("replayed cluster objects resealed the data key: %v", seals)
	}
	m.followUnlockKey(cluster(next, 12)) // rotated
	m.followUnlockKey(cluster(nil, 15))  // autolock off
	if len(seals) != 2 || !bytes.Equal(seals[0].key, next) || seals[0].at != 12 || seals[1].key != nil || seals[1].at != 15 {
		t.Fatalf("seals = %v, want the rotated key at 12, then none at 15", seals)
	}
	if m.UnlockKey() != nil {
		t.Fatalf("UnlockKey after autolock off = %x", m.UnlockKey())
	}
}
