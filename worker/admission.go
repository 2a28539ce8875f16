package worker

import (
	"container/list"
	"runtime"
	"sync"
	"time"
)

// DefaultMaxConcurrentStarts is the ceiling of the admission window: the
// most container creates and starts a node runs at once however fast they
// go. A scale-up assigns hundreds of tasks to a node in one message, and
// starting all of them together only makes every start slower and starves
// the agent's heartbeats (a node that misses them is marked down and its
// tasks are moved: churn instead of progress).
var DefaultMaxConcurrentStarts = 2 * runtime.NumCPU()

// Admission of starts (AIMD, as TCP's congestion window): a task holds a
// slot from PREPARING until its container's start returned. The window
// grows by one slot per window of starts that took at most slowFactor
// times the fastest start seen, and is cut to cutFactor of itself when a
// start takes longer or the agent's own heartbeat ran late (the node, not
// the start, is the bottleneck then), at most once per window of starts, so
// one burst of slow starts is one cut. The tasks beyond the window wait in
// ACCEPTED: the managers see them queued on this node, not failed, and the
// scheduler prefers nodes with fewer of them (scheduler.NodeInfo.Backlog).
const (
	slowFactor = 3
	cutFactor  = 0.5
	// baselineAge is how much of a slower sample the fastest start takes
	// in: a machine that became slower for good (a lower CPU quota) raises
	// the baseline over some hundreds of starts instead of being cut
	// forever.
	baselineAge = 0.01
)

// admission is the start window. Slots go to waiters in arrival order.
type admission struct {
	mu       sync.Mutex // guards the fields below
	limit    float64    // window; floor(limit) slots, at least one
	max      float64
	inflight int
	waiters  list.List // of chan struct{} (buffered 1): a slot handed over
	baseline time.Duration
	// sinceCut counts starts since the last cut: the next cut needs a
	// window of them, so one congestion event cuts once.
	sinceCut int
}

// newAdmission returns a window of at most max slots (DefaultMaxConcurrentStarts
// when max <= 0), starting at half of it: a node first proves it sustains
// more.
func newAdmission(max int) *admission {
	if max <= 0 {
		max = DefaultMaxConcurrentStarts
	}
	return &admission{limit: float64(max+1) / 2, max: float64(max), sinceCut: max}
}

func (a *admission) slotsLocked() int { return max(1, int(a.limit)) }

// enqueue asks for a slot: grant receives once the slot is the caller's
// (at once when one is free and nobody waits). cancel gives up the place,
// or the slot if it was granted meanwhile (the caller must not call
// release then).
func (a *admission) enqueue() (grant <-chan struct{}, cancel func()) {
	g := make(chan struct{}, 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inflight < a.slotsLocked() && a.waiters.Len() == 0 {
		a.inflight++
		g <- struct{}{}
		return g, func() { a.giveUp(g, nil) }
	}
	e := a.waiters.PushBack(g)
	return g, func() { a.giveUp(g, e) }
}

// giveUp is enqueue's cancel.
func (a *admission) giveUp(g chan struct{}, e *list.Element) {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-g:
		// Granted: pass the slot on.
		a.inflight--
		a.handOffLocked()
	default:
		if e != nil {
			a.waiters.Remove(e)
		}
	}
}

// handOffLocked grants free slots to the first waiters.
func (a *admission) handOffLocked() {
	for a.inflight < a.slotsLocked() && a.waiters.Len() > 0 {
		grant := a.waiters.Remove(a.waiters.Front()).(chan struct{})
		a.inflight++
		grant <- struct{}{}
	}
}

// release frees a slot. took is how long the start took from its grant,
// zero when it did not complete (failed, or the task was stopped): such a
// release teaches the window nothing.
func (a *admission) release(took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight--
	if took > 0 {
		a.sinceCut++
		switch {
		case a.baseline == 0 || took < a.baseline:
			a.baseline = took
		case took > slowFactor*a.baseline:
			a.cutLocked()
		default:
			a.limit = min(a.max, a.limit+1/a.limit)
		}
		if took > a.baseline {
			a.baseline += time.Duration(baselineAge * float64(took-a.baseline))
		}
	}
	a.handOffLocked()
}

// congested cuts the window: the agent's heartbeat ran late.
func (a *admission) congested() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cutLocked()
}

func (a *admission) cutLocked() {
	if float64(a.sinceCut) < a.limit {
		return
	}
	a.limit = max(1, a.limit*cutFactor)
	a.sinceCut = 0
}

// state returns the window, the starts in flight and the tasks queued.
func (a *admission) state() (window, inflight, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.slotsLocked(), a.inflight, a.waiters.Len()
}
