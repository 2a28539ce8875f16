package manager

import (
	"context"
	"errors"
	"time"

	"github.com/shoal-project/shoal/api"
)

// A node that has just won an election has not yet applied what earlier
// terms committed (hashicorp/raft applies those entries once this term
// commits one), so its store may miss objects every client has seen: a
// call served from it then would answer "the swarm is not initialized" or
// decide on an old version. Calls that reach the leader wait until it has
// caught up; whileLeader says when.

// caughtUpWait bounds that wait: catching up is one commit, and a leader
// that cannot commit for this long is as good as none.
const caughtUpWait = 5 * time.Second

// setCaughtUp records whether this node, as leader of the current term, has
// applied what earlier terms committed.
func (m *Manager) setCaughtUp(yes bool) {
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	if m.ready == nil {
		m.ready = make(chan struct{})
	}
	select {
	case <-m.ready:
		if !yes {
			m.ready = make(chan struct{})
		}
	default:
		if yes {
			close(m.ready)
		}
	}
}

func (m *Manager) readyCh() <-chan struct{} {
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	if m.ready == nil {
		m.ready = make(chan struct{})
	}
	return m.ready
}

// errCatchingUp: this node leads but has not caught up within caughtUpWait.
var errCatchingUp = api.Wrap(api.ErrUnavailable, errors.New("the new leader is still applying the raft log: retry"))

// waitCaughtUp returns once this leader serves the store as committed.
func (m *Manager) waitCaughtUp(ctx context.Context) error {
	t := time.NewTimer(caughtUpWait)
	defer t.Stop()
	select {
	case <-m.readyCh():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errCatchingUp
	}
}
