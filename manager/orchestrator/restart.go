package orchestrator

import (
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
)

// RestartDelay is the delay of spec's restart policy: DefaultRestartDelay
// when unset, never negative.
func RestartDelay(spec *api.TaskSpec) time.Duration {
	d := spec.GetRestart().GetDelay()
	if d == nil {
		return DefaultRestartDelay
	}
	return max(d.AsDuration(), 0)
}

// ShouldRestart decides whether ended, a task that reached a terminal state
// while still desired running, may be replaced. history is every task of the
// same replica (slot or node), in any order; ended may be among them.
//
// max_attempts is counted from the tasks themselves, not from a counter kept
// in memory (Swarm's restart supervisor forgets its counts on a leader
// change): the restarts so far are the replica's earlier tasks made from the
// same template as ended (a spec update starts afresh, as in Swarm) that
// ended on their own (complete, failed, rejected) within the window before
// ended did. Tasks moved off a lost or drained node or replaced by an update
// are not failures and do not count (Swarm counts them). Measuring the window
// up to ended's own end, not up to now, makes a refusal final: waiting does
// not turn it into a restart. ReapHistory keeps the tasks this count needs.
func ShouldRestart(ended *api.Task, history []*api.Task, now time.Time) (bool, string) {
	p := ended.GetSpec().GetRestart()
	switch p.GetCondition() {
	case api.RestartPolicy_NONE:
		return false, "restart condition is none"
	case api.RestartPolicy_ON_FAILURE:
		if ended.GetStatus().GetState() == api.TaskState_COMPLETE {
			return false, "completed and restart condition is on-failure"
		}
	}
	if p.GetMaxAttempts() == 0 {
		return true, ""
	}
	restarts := restartsBefore(ended, history, now)
	if restarts >= p.GetMaxAttempts() {
		return false, fmt.Sprintf("restarted %d times, max attempts %d", restarts, p.GetMaxAttempts())
	}
	return true, ""
}

// endedAt is when t reached its terminal state (its status time), or now.
func endedAt(t *api.Task, now time.Time) time.Time {
	if ts := t.GetStatus().GetTimestamp(); ts != nil {
		return ts.AsTime()
	}
	return now
}

// restartsBefore counts the restarts of ended's replica that count against
// its policy's max_attempts (see ShouldRestart).
func restartsBefore(ended *api.Task, history []*api.Task, now time.Time) uint64 {
	end := endedAt(ended, now)
	var from time.Time // zero: the window is unbounded
	if w := ended.GetSpec().GetRestart().GetWindow(); w != nil && w.AsDuration() > 0 {
		from = end.Add(-w.AsDuration())
	}
	var n uint64
	for _, t := range failures(ended, history) {
		e := endedAt(t, now)
		if t.GetId() != ended.GetId() && !e.After(end) && (from.IsZero() || e.After(from)) {
			n++
		}
	}
	return n
}

// endedOnItsOwn reports whether t's terminal state came from the task itself
// rather than from a manager (SHUTDOWN) or a lost node (ORPHANED).
func endedOnItsOwn(t *api.Task) bool {
	switch t.GetStatus().GetState() {
	case api.TaskState_COMPLETE, api.TaskState_FAILED, api.TaskState_REJECTED:
		return true
	}
	return false
}

// failures are the tasks of history made from ended's template that ended on
// their own, leaving out removed ones (an earlier life of a reused slot).
func failures(ended *api.Task, history []*api.Task) []*api.Task {
	var out []*api.Task
	for _, t := range history {
		if t.GetDesiredState() < api.TaskState_REMOVE && endedOnItsOwn(t) && sameTemplate(t, ended) {
			out = append(out, t)
		}
	}
	return out
}

// ReleaseAt is when a held task (desired READY, made by a restart) may start:
// its creation time plus its restart delay. The delay lives in the task as
// data, so no timer is needed and a new leader honours it without knowing
// anything the old one knew.
func ReleaseAt(t *api.Task) time.Time {
	return created(t).Add(RestartDelay(t.GetSpec()))
}

// releaseHeld lets g's held current task start once its restart delay is over
// and nothing else of the replica still runs (but the task a start-first
// update keeps until a replacement runs).
func (b *builder) releaseHeld(svc *api.Service, g *group, nodes map[string]*api.Node) {
	t := g.current
	if at := ReleaseAt(t); b.now.Before(at) {
		b.wakeAt(at)
		return
	}
	for _, o := range g.tasks {
		if o != t && o != g.kept && !stopped(o, nodes) {
			return // the store will tell us when it stops
		}
	}
	if b.setDesired(t, api.TaskState_RUNNING, "restart delay over") {
		b.logf(g.slot, g.node, "%s: start %s (restart delay over)", g.where(svc), t.GetId())
	}
}

// restart handles g's current task when it ended while desired running:
// replaced at once when its template is outdated, else as the restart policy
// says. canCreate is false when no replacement may be made now (a global
// service's node that takes no new tasks).
func (b *builder) restart(svc *api.Service, g *group, nodes map[string]*api.Node, canCreate bool) {
	old := g.current
	if !canCreate {
		return
	}
	if Dirty(svc, old) {
		b.replace(svc, g, old, 0, "service updated")
		return
	}
	ok, why := ShouldRestart(old, g.tasks, b.now)
	if !ok {
		_ = why // the task stays as the replica's last word; service ps shows it
		return
	}
	delay := RestartDelay(svc.GetSpec().GetTask())
	if nodeDrained(nodes[old.GetNodeId()]) {
		delay = 0 // as Swarm: moving off a drained node is not a crash loop
	}
	b.replace(svc, g, old, delay, fmt.Sprintf("task %s", old.GetStatus().GetState()))
}

// replace stops old (if it is still wanted) and makes a task in its place.
// With a delay the new task is held at desired READY: the scheduler places
// it and the worker prepares it (pulls the image), but it starts only when a
// later call finds the delay over (releaseHeld).
func (b *builder) replace(svc *api.Service, g *group, old *api.Task, delay time.Duration, why string) *api.Task {
	if old != nil {
		b.setDesired(old, api.TaskState_SHUTDOWN, "replaced: "+why)
	}
	desired := api.TaskState_RUNNING
	if delay > 0 {
		desired = api.TaskState_READY
		b.wakeAt(b.now.Add(delay))
	}
	t := b.newTask(svc, g.slot, g.node, desired)
	switch {
	case old == nil:
		b.logf(g.slot, g.node, "%s: create %s (%s)", g.where(svc), t.GetId(), why)
	case delay > 0:
		b.logf(g.slot, g.node, "%s: replace %s with %s (%s), start after %s", g.where(svc), old.GetId(), t.GetId(), why, delay)
	default:
		b.logf(g.slot, g.node, "%s: replace %s with %s (%s)", g.where(svc), old.GetId(), t.GetId(), why)
	}
	return t
}
