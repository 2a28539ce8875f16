package dispatcher

import (
	"sort"
	"time"
)

// deadlines tracks, per node, when its next heartbeat is due at the latest.
// It is plain data (the Dispatcher guards it with its mutex) so that the
// expiry rules are table-testable without goroutines or clocks.
//
// next and expired scan every node: a dispatcher serves hundreds to a few
// thousand nodes, and a scan per expiry wake-up is cheaper to get right
// than a heap kept in sync with every heartbeat.
type deadlines struct {
	at map[string]time.Time
}

func newDeadlines() *deadlines { return &deadlines{at: make(map[string]time.Time)} }

// set makes node due at t (a heartbeat extends, a new session starts).
func (d *deadlines) set(node string, t time.Time) { d.at[node] = t }

// remove forgets node (its session ended for a reason other than silence).
func (d *deadlines) remove(node string) { delete(d.at, node) }

// next returns the earliest deadline, or false if no node is tracked.
func (d *deadlines) next() (time.Time, bool) {
	var first time.Time
	found := false
	for _, t := range d.at {
		if !found || t.Before(first) {
			first, found = t, true
		}
	}
	return first, found
}

// expired removes and returns, sorted, the nodes whose deadline is at or
// before now: they missed their heartbeats.
func (d *deadlines) expired(now time.Time) []string {
	var out []string
	for n, t := range d.at {
		if !t.After(now) {
			out = append(out, n)
		}
	}
	for _, n := range out {
		delete(d.at, n)
	}
	sort.Strings(out)
	return out
}
