package manager

import (
	"bytes"

	"github.com/shoal-project/shoal/api"
)

// Autolock (Swarm's): the raft data key (Config.DEK) is sealed on disk by
// the daemon with the cluster's unlock key while autolock is on. The key is
// replicated in the cluster object, so every manager follows it: when it
// changes (autolock turned on or off, `swarm unlock-key --rotate`), the
// manager asks the daemon to seal its data key again (Config.SealDEK).

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
	if err := m.cfg.SealDEK(k, v); err != nil {
		m.log.Error("manager: seal the raft data key with the new unlock key", "err", err)
		return
	}
	m.lockKey, m.lockedAt = bytes.Clone(k), v
	m.log.Info("manager: raft data key sealed again", "autolock", len(k) > 0)
}
