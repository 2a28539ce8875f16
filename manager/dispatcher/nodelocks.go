package dispatcher

import (
	"slices"
	"sync"
)

// nodeLocks serialises the status writes of each node (READY when a session
// opens, DOWN when its deadline passes) so that a DOWN decided before a
// reconnect can never land after that reconnect's READY, while different
// nodes' writes run at once. One lock for all nodes made every session open
// wait for the raft write of the one before: after a leader change, 1,000
// agents reconnecting queued for 1,000 raft rounds in turn, and those served
// after their grace expired and started over (the scale benchmark's
// reopened sessions). Concurrent writes share raft entries instead.
type nodeLocks struct {
	mu sync.Mutex
	m  map[string]*nodeLock
}

type nodeLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; the entry goes when it drops to 0
}

// lock locks every node of ids (in sorted order, so two callers never wait
// for each other crosswise) and returns the function that unlocks them.
func (l *nodeLocks) lock(ids ...string) (unlock func()) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	held := make([]*nodeLock, len(ids))
	for i, id := range ids {
		l.mu.Lock()
		if l.m == nil {
			l.m = make(map[string]*nodeLock)
		}
		e := l.m[id]
		if e == nil {
			e = &nodeLock{}
			l.m[id] = e
		}
		e.refs++
		l.mu.Unlock()
		e.mu.Lock()
		held[i] = e
	}
	return func() {
		for i, e := range held {
			e.mu.Unlock()
			l.mu.Lock()
			if e.refs--; e.refs == 0 {
				delete(l.m, ids[i])
			}
			l.mu.Unlock()
		}
	}
}
