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
	ch    chan Batch
	// err is set, under s.mu, before ch is closed.
	err error
}

// C delivers batches in raft order. It is closed when the watch ends; Err
// then says why.
func (w *Watcher) C() <-chan Batch { return w.ch }

// Err is nil while the watch runs, then ErrWatchOverflow, ErrWatchRestored
// or ErrWatchClosed. Call it after C is closed.
func (w *Watcher) Err() error {
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	return w.err
}

// Close ends the watch; C is closed. It is safe to call more than once.
func (w *Watcher) Close() {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.endLocked(w, ErrWatchClosed)
}

// Watch subscribes to changes of the given kinds (all kinds if none), with a
// buffer of DefaultWatchBuffer batches.
func (s *MemoryStore) Watch(kinds ...Kind) *Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watchLocked(DefaultWatchBuffer, kinds)
}

// ViewAndWatch runs fn on the current state and subscribes, atomically: the
// first batch the watcher receives is the first change after what fn saw.
func (s *MemoryStore) ViewAndWatch(buffer int, fn func(ReadTx), kinds ...Kind) *Watcher {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&readTx{s: s})
	return s.watchLocked(buffer, kinds)
}

func (s *MemoryStore) watchLocked(buffer int, kinds []Kind) *Watcher {
	w := &Watcher{s: s, ch: make(chan Batch, buffer)}
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
	s.watchers[w] = struct{}{}
	return w
}

func (s *MemoryStore) endLocked(w *Watcher, err error) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	w.err = err
	close(w.ch)
}

// publishLocked hands one entry's events to every watcher without blocking.
// Map order does not matter here: every watcher gets the same batches.
func (s *MemoryStore) publishLocked(index uint64, events []Event) {
	if len(events) == 0 {
		return
	}
	for w := range s.watchers {
		var mine []Event
		for _, e := range events {
			if w.kinds[e.Kind] {
				mine = append(mine, e)
			}
		}
		if len(mine) == 0 {
			continue
		}
		select {
		case w.ch <- Batch{Version: index, Events: mine}:
		default:
			s.endLocked(w, ErrWatchOverflow)
		}
	}
}

// endAllLocked ends every watch with err (a restore replaced the state).
func (s *MemoryStore) endAllLocked(err error) {
	for w := range s.watchers {
		s.endLocked(w, err)
	}
}
