package raftstore

import (
	"errors"

	"github.com/shoal-project/shoal/api"
)

// Event is one change made by one applied proposal.
type Event struct {
	Kind   Kind
	Action api.StoreAction_Kind // CREATE, UPDATE or REMOVE
	// Object is the new object (nil for REMOVE); Old the one it replaced
	// (nil for CREATE). Both are shared with the store and other watchers:
	// read them, never modify them (proto.Clone first).
	Object, Old Object
	// Version is the raft index of the entry that made the change.
	Version uint64
}

// Batch is the changes of one raft entry that a watcher asked for.
type Batch struct {
	Version uint64
	Events  []Event
}

// ErrWatchOverflow ends a watch whose reader fell behind by more than its
// buffer, and ErrWatchRestored one whose store was replaced by a snapshot.
// Both mean the same to the reader: re-read the state (ViewAndWatch) and go
// on from there. Apply never waits for a watcher.
var (
	ErrWatchOverflow = errors.New("raftstore: watcher fell behind; resync")
	ErrWatchRestored = errors.New("raftstore: store restored from a snapshot; resync")
	ErrWatchClosed   = errors.New("raftstore: watch closed")
)

// DefaultWatchBuffer is the number of batches a watcher may fall behind.
const DefaultWatchBuffer = 256

// Watcher receives the batches of changes to the kinds it asked for.
//
// Why drop-and-resync rather than an unbounded queue or blocking: a blocked
// Apply would stall raft on every manager, and an unbounded queue lets one
// stuck reader eat the manager's memory; a reader that is that far behind is
// better served by a fresh View than by replaying thousands of stale changes.
type Watcher struct {
	s     *MemoryStore
	kinds [numKinds]bool
	// node, when set, limits the watch to task events whose new or old
	// task is on that node (ViewAndWatchTasksOnNode).
	node string
	ch   chan Batch
	// err is set, under s.wmu, before ch is closed.
	err error
}

// watchers is the registry of live watches, guarded by MemoryStore.wmu.
// Watches of one node's tasks are indexed by node so that publishing a task
// event costs the watchers of its node, not one check per node in the
// cluster (every node's Assignments stream is such a watch).
type watchers struct {
	all    map[*Watcher]struct{}
	byNode map[string]map[*Watcher]struct{}
}

func newWatchers() watchers {
	return watchers{all: make(map[*Watcher]struct{}), byNode: make(map[string]map[*Watcher]struct{})}
}

// C delivers batches in raft order. It is closed when the watch ends; Err
// then says why.
func (w *Watcher) C() <-chan Batch { return w.ch }

// Err is nil while the watch runs, then ErrWatchOverflow, ErrWatchRestored
// or ErrWatchClosed. Call it after C is closed.
func (w *Watcher) Err() error {
	w.s.wmu.Lock()
	defer w.s.wmu.Unlock()
	return w.err
}

// Close ends the watch; C is closed. It is safe to call more than once.
func (w *Watcher) Close() {
	w.s.wmu.Lock()
	defer w.s.wmu.Unlock()
	w.s.endWatchLocked(w, ErrWatchClosed)
}

// Watch subscribes to changes of the given kinds (all kinds if none), with a
// buffer of DefaultWatchBuffer batches.
func (s *MemoryStore) Watch(kinds ...Kind) *Watcher {
	return s.ViewAndWatch(DefaultWatchBuffer, func(ReadTx) {}, kinds...)
}

// ViewAndWatch runs fn on the current state and subscribes, atomically: the
// first batch the watcher receives is the first change after what fn saw.
func (s *MemoryStore) ViewAndWatch(buffer int, fn func(ReadTx), kinds ...Kind) *Watcher {
	return s.viewAndWatch(buffer, fn, "", kinds)
}

// ViewAndWatchTasksOnNode is ViewAndWatch for the tasks of one node: the
// watcher receives only task events whose new or old task has NodeId
// nodeID (so a task moved away is seen as well as one moved in).
func (s *MemoryStore) ViewAndWatchTasksOnNode(buffer int, fn func(ReadTx), nodeID string) *Watcher {
	return s.viewAndWatch(buffer, fn, nodeID, []Kind{KindTask})
}

// viewAndWatch holds mu for reading while fn runs, so no entry is applied
// in between, and takes wmu to register: an entry applied just before is
// still being published under wmu, and the new watcher must not get it.
func (s *MemoryStore) viewAndWatch(buffer int, fn func(ReadTx), node string, kinds []Kind) *Watcher {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(&readTx{s: s})
	w := &Watcher{s: s, node: node, ch: make(chan Batch, buffer)}
	for _, k := range kinds {
		if k >= 0 && k < numKinds {
			w.kinds[k] = true
		}
	}
	if len(kinds) == 0 {
		for k := range w.kinds {
			w.kinds[k] = true
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if node == "" {
		s.watch.all[w] = struct{}{}
		return w
	}
	m := s.watch.byNode[node]
	if m == nil {
		m = make(map[*Watcher]struct{})
		s.watch.byNode[node] = m
	}
	m[w] = struct{}{}
	return w
}

// endWatchLocked removes w and closes its channel; wmu must be held.
func (s *MemoryStore) endWatchLocked(w *Watcher, err error) {
	if w.node == "" {
		if _, ok := s.watch.all[w]; !ok {
			return
		}
		delete(s.watch.all, w)
	} else {
		m := s.watch.byNode[w.node]
		if _, ok := m[w]; !ok {
			return
		}
		delete(m, w)
		if len(m) == 0 {
			delete(s.watch.byNode, w.node)
		}
	}
	w.err = err
	close(w.ch)
}

// applyAndPublish applies one entry with s.mu held for writing, releases
// s.mu and then hands the events to the watchers. The filtering and copying
// run under wmu only, so readers (View) are not held up by them; wmu is
// taken before mu is released so that entries are published in raft order
// and a ViewAndWatch in between registers after this entry's publication.
func (s *MemoryStore) applyAndPublish(index uint64, batch *api.ProposalBatch, owned bool) []error {
	results, events := s.applyLocked(index, batch, owned)
	s.wmu.Lock()
	s.mu.Unlock()
	defer s.wmu.Unlock()
	s.publishLocked(index, events)
	return results
}

// publishLocked hands one entry's events to the watchers that asked for
// them, without blocking; wmu must be held. Map order does not matter here:
// each watcher gets its events in entry order.
func (s *MemoryStore) publishLocked(index uint64, events []Event) {
	if len(events) == 0 {
		return
	}
	send := func(w *Watcher, mine []Event) {
		select {
		case w.ch <- Batch{Version: index, Events: mine}:
		default:
			s.endWatchLocked(w, ErrWatchOverflow)
		}
	}
	for w := range s.watch.all {
		var mine []Event
		for _, e := range events {
			if w.kinds[e.Kind] {
				mine = append(mine, e)
			}
		}
		if len(mine) > 0 {
			send(w, mine)
		}
	}
	if len(s.watch.byNode) == 0 {
		return
	}
	var (
		perWatcher map[*Watcher][]Event
		order      []*Watcher // first-touched order, for a deterministic send order
	)
	add := func(node string, e Event) {
		for w := range s.watch.byNode[node] {
			if perWatcher == nil {
				perWatcher = make(map[*Watcher][]Event)
			}
			if _, ok := perWatcher[w]; !ok {
				order = append(order, w)
			}
			perWatcher[w] = append(perWatcher[w], e)
		}
	}
	for _, e := range events {
		if e.Kind != KindTask {
			continue
		}
		newNode, oldNode := taskNode(e.Object), taskNode(e.Old)
		if newNode != "" {
			add(newNode, e)
		}
		if oldNode != "" && oldNode != newNode {
			add(oldNode, e)
		}
	}
	for _, w := range order {
		send(w, perWatcher[w])
	}
}

// taskNode is the node of a task event's object ("" for none).
func taskNode(o Object) string {
	if t, ok := o.(*api.Task); ok && t != nil {
		return t.GetNodeId()
	}
	return ""
}

// endAllLocked ends every watch with err (a restore replaced the state);
// wmu must be held.
func (s *MemoryStore) endAllLocked(err error) {
	for w := range s.watch.all {
		s.endWatchLocked(w, err)
	}
	for _, m := range s.watch.byNode {
		for w := range m {
			s.endWatchLocked(w, err)
		}
	}
}
