package manager

import (
	"bytes"
	"crypto/rand"
	"slices"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// Autolock (Swarm's): the raft data key (Config.DEK) is sealed on disk by
// the daemon with the cluster's unlock key while autolock is on. The key is
// replicated in the cluster object, so every manager follows it: when it
// changes (autolock turned on or off, `swarm unlock-key --rotate`), the
// manager asks the daemon to seal its data key again (Config.SealDEK).
//
// When the new unlock key is not nil, the data key is also replaced, as
// Swarm does: before autolock it lay on disk in the clear (and after a key
// rotation the old unlock key may be the one that leaked), so whoever read
// it could read everything written later. The new key is sealed to disk
// first, with the old ones kept (what they sealed stays in the log and the
// retained snapshots), and only then does raft seal with it: a crash in
// between leaves a state every key on disk still opens.

// dekRotator is the raft node's keyring (raftstore.Node).
type dekRotator interface {
	RotateDEK(dek []byte) error
}

// UnlockKey is the unlock key this manager's data key is sealed with now
// (nil: in the clear), for the daemon to restart the manager with.
func (m *Manager) UnlockKey() []byte {
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	return m.lockKey
}

// followUnlockKey reseals the data key when the cluster's unlock key is not
// the one it is sealed with. Only a cluster object newer than the one the
// seal follows counts: a restarted manager replays older ones (its
// snapshot may predate autolock), and following them would write the data
// key in the clear, or under a rotated-out key, until the replay caught up.
// A failure is logged and tried again on the next cluster change; the old
// seal stays valid meanwhile.
func (m *Manager) followUnlockKey(c *api.Cluster) {
	if m.cfg.SealDEK == nil {
		return
	}
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	k, v := c.GetUnlockKey(), c.GetMeta().GetVersion()
	if bytes.Equal(k, m.lockKey) || v <= m.lockedAt {
		return
	}
	dek, old := m.dek, m.oldDEKs
	rotate := len(k) > 0 && m.keys != nil
	if rotate {
		dek = make([]byte, raftstore.DEKSize)
		if _, err := rand.Read(dek); err != nil {
			m.log.Error("manager: new raft data key", "err", err)
			return
		}
		old = append(slices.Clone(old), m.dek)
	}
	if err := m.cfg.SealDEK(k, v, dek, old); err != nil {
		m.log.Error("manager: seal the raft data key with the new unlock key", "err", err)
		return
	}
	m.lockKey, m.lockedAt = bytes.Clone(k), v
	if rotate {
		if err := m.keys.RotateDEK(dek); err != nil {
			// The file names dek as current and keeps the old key, so a
			// restart reads all and seals with dek; until then raft seals
			// with the old one.
			m.log.Error("manager: rotate the raft data key", "err", err)
		}
		m.dek, m.oldDEKs = dek, old
	}
	m.log.Info("manager: raft data key sealed again", "autolock", len(k) > 0, "rotated", rotate)
}
