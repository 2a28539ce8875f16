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
//
// A node's grace adapts to how late its heartbeats have been arriving: a
// node that is alive but busy (its agent, or this manager, starved of CPU)
// beats late before it would ever miss the fixed deadline, and is given
// proportionally longer, up to a cap, before it is declared down. A node
// that dies stops beating at its usual pace and keeps the short grace.
type deadlines struct {
	at   map[string]time.Time
	last map[string]time.Time     // arrival of the node's last heartbeat
	gap  map[string]time.Duration // slow-decaying maximum of the gaps between its heartbeats
}

func newDeadlines() *deadlines {
	return &deadlines{at: make(map[string]time.Time), last: make(map[string]time.Time), gap: make(map[string]time.Duration)}
}

// set makes node due at t (a new session starts, a retry is planned).
func (d *deadlines) set(node string, t time.Time) { d.at[node] = t }

// beat records a heartbeat of node at now and makes it due a grace later:
// base (period x missed heartbeats) when the node beats every period, and
// base scaled by how much longer its recent gaps were, up to limit. The gap
// estimate rises at once and decays by a tenth per heartbeat.
func (d *deadlines) beat(node string, now time.Time, period, base, limit time.Duration) time.Time {
	return d.beats(node, now, 1, period, base, limit)
}

// beats records n heartbeats of node, the last at now, as beat does n of
// them: their gaps are taken as even (the fast path's table counts beats
// and keeps the last one's arrival).
func (d *deadlines) beats(node string, now time.Time, n uint64, period, base, limit time.Duration) time.Time {
	if last, ok := d.last[node]; ok && n > 0 {
		g := now.Sub(last) / time.Duration(n)
		if prev := d.gap[node]; g < prev {
			g = prev - (prev-g)/10
		}
		d.gap[node] = g
	}
	d.last[node] = now
	grace := base
	if g := d.gap[node]; g > period && period > 0 {
		grace = time.Duration(float64(base) * float64(g) / float64(period))
	}
	grace = min(max(grace, base), limit)
	d.at[node] = now.Add(grace)
	return d.at[node]
}

// counted records n beats of node counted after the fact (the fast path's
// table, the last of them at at) as beats does, unless the node is not
// tracked (its session ends) or a heartbeat already counted is as new.
func (d *deadlines) counted(node string, at time.Time, n uint64, period, base, limit time.Duration) {
	if _, tracked := d.at[node]; !tracked {
		return
	}
	if last, ok := d.last[node]; ok && !at.After(last) {
		return
	}
	d.beats(node, at, n, period, base, limit)
}

// remove forgets node (its session ended for a reason other than silence).
func (d *deadlines) remove(node string) {
	delete(d.at, node)
	delete(d.last, node)
	delete(d.gap, node)
}

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
		delete(d.last, n)
		delete(d.gap, n)
	}
	sort.Strings(out)
	return out
}

// ration keeps at most limit of the expired nodes (sorted) to be marked
// down now and makes the others due again at retry: nodes that all fall
// silent at once point at a starved manager or network more often than at
// that many dead machines, and rescheduling all their tasks at once is what
// turns a slow cluster into a collapsing one. A node that beats meanwhile is
// saved; one that stays silent is taken at the next round.
func (d *deadlines) ration(expired []string, limit int, retry time.Time) []string {
	if len(expired) <= limit {
		return expired
	}
	for _, n := range expired[limit:] {
		d.at[n] = retry
	}
	return expired[:limit]
}
