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
		key     []byte
		at      uint64
		dek     []byte
		old     [][]byte
		rotated int // RotateDEK calls before this seal
	}
	var seals []seal
	keys := &fakeKeyring{}
	first := bytes.Repeat([]byte{9}, 32)
	m := &Manager{log: slog.New(slog.DiscardHandler), lockKey: key, lockedAt: 10, dek: first, keys: keys}
	m.cfg.SealDEK = func(k []byte, v uint64, dek []byte, old [][]byte) error {
		seals = append(seals, seal{key: k, at: v, dek: dek, old: old, rotated: len(keys.added)})
		return nil
	}
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
	// A new unlock key brings a new data key, sealed to disk (with the old
	// one kept) before raft seals with it; autolock off keeps the key.
	if s := seals[0]; bytes.Equal(s.dek, first) || len(s.dek) != 32 || len(s.old) != 1 || !bytes.Equal(s.old[0], first) || s.rotated != 0 {
		t.Fatalf("seal with a new unlock key: dek %x old %x after %d rotations; want a new key, the first kept, saved before raft rotates", s.dek, s.old, s.rotated)
	}
	if len(keys.added) != 1 || !bytes.Equal(keys.added[0], seals[0].dek) {
		t.Fatalf("raft rotated to %x, want the sealed key %x", keys.added, seals[0].dek)
	}
	if s := seals[1]; !bytes.Equal(s.dek, seals[0].dek) || len(s.old) != 1 || len(keys.added) != 1 {
		t.Fatalf("autolock off: dek %x old %d, %d rotations; want the key kept", s.dek, len(s.old), len(keys.added))
	}
	if m.UnlockKey() != nil {
		t.Fatalf("UnlockKey after autolock off = %x", m.UnlockKey())
	}
}

// fakeKeyring records the data keys raft was asked to seal with.
type fakeKeyring struct{ added [][]byte }

func (k *fakeKeyring) RotateDEK(dek []byte) error {
	k.added = append(k.added, dek)
	return nil
}
