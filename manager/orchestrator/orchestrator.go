// Package orchestrator holds the leader's decisions about tasks: how many a
// service should have and where their replicas stand (ReconcileReplicated,
// ReconcileGlobal), when a finished task is replaced (the restart policy),
// which old tasks are deleted (ReapHistory) and which tasks of long-lost
// nodes are given up (OrphanTasks).
//
// Every decision is a pure function over a snapshot of services, nodes and
// tasks plus the current time, returning a Result that says what to create,
// update and delete and why. Nothing here starts a goroutine, reads a clock,
// touches the store or does I/O: the loop that watches the store calls these
// functions and writes each Result in one transaction. Timers are replaced by
// data (a held task's creation time plus its restart delay) and by
// Result.NextEvaluation, the time the loop should call again. See README.md
// for the slot model and where shoal differs from Swarm.
package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-project/shoal/api"
)

// Defaults, as in Docker Swarm.
const (
	// DefaultRestartDelay is the restart delay when a policy sets none.
	DefaultRestartDelay = 5 * time.Second
	// DefaultHistoryLimit is how many tasks a slot keeps when the cluster
	// sets no task_history_retention_limit.
	DefaultHistoryLimit = 5
	// DefaultOrphanPeriod is how long a node must have been down before its
	// tasks are given up as ORPHANED.
	DefaultOrphanPeriod = 24 * time.Hour
)

// IDSource gives new tasks their IDs. The leader stamps IDs before it
// proposes, so that applying a proposal stays deterministic on every manager;
// tests use a counter.
type IDSource interface {
	NewID() string
}

// IDFunc adapts a function (raftstore.NewID) to IDSource.
type IDFunc func() string

// NewID calls f.
func (f IDFunc) NewID() string { return f() }

// Result is what one reconciliation decided. The loop writes it in one store
// transaction: Create, then Update, then Delete. Slices are sorted (by slot,
// node, then ID) so equal inputs give equal Results.
type Result struct {
	// Create are new tasks, complete with ID, times, spec and desired state.
	Create []*api.Task
	// Update are changed copies of stored tasks (desired state, or status for
	// orphaning). Each carries the meta.version it was read at, so the store
	// refuses it if the task changed meanwhile; the loop then re-reads and
	// reconciles again.
	Update []TaskUpdate
	// Delete are IDs of tasks to remove from the store.
	Delete []string
	// NextEvaluation, when not zero, is the earliest time at which calling
	// again (with no other change) would decide something new: a held task's
	// restart delay ends, a node's orphan period ends.
	NextEvaluation time.Time
	// Events say in words what was decided, for logs and the golden tests.
	Events []string
	// WaitsForRunning is set while a rolling update is under way: then, and
	// only then, a task of the service reaching RUNNING can change the next
	// decision (the next batch, the delay and monitor windows start from
	// it). Without it the loop need not reconcile on RUNNING reports.
	WaitsForRunning bool
	// UpdateStatus, when not nil, is the service's new update status; the
	// loop writes it on the service as read (its meta.version), so a
	// service changed meanwhile refuses it and is reconciled again.
	UpdateStatus *api.UpdateStatus
	// Rollback, when not empty, asks the loop to roll the service back to
	// its previous spec (failure action rollback), with this status
	// message. Nothing else is decided in that call: the next one works
	// from the rolled-back spec.
	Rollback string
}

// TaskUpdate is one changed task and why it changed.
type TaskUpdate struct {
	Task   *api.Task
	Reason string
}

// Empty reports whether r changes nothing.
func (r *Result) Empty() bool {
	return len(r.Create) == 0 && len(r.Update) == 0 && len(r.Delete) == 0 && r.UpdateStatus == nil && r.Rollback == ""
}

// builder collects one call's decisions. It never modifies the input tasks:
// an update is made on a clone, kept in changed so that two rules touching
// one task edit the same copy.
type builder struct {
	now     time.Time
	ids     IDSource
	res     Result
	changed map[string]*TaskUpdate
	// deleted is res.Delete as a set: a scale-down of thousands of slots
	// must not search the list once per task.
	deleted map[string]bool
	events  []event
}

// event is a Result event with its sort key, so events come out in slot/node
// order whatever order the rules ran in.
type event struct {
	slot uint64
	node string
	text string
}

func newBuilder(now time.Time, ids IDSource) *builder {
	return &builder{now: now, ids: ids, changed: map[string]*TaskUpdate{}, deleted: map[string]bool{}}
}

// logf records an event about the slot or node of t.
func (b *builder) logf(slot uint64, node, format string, args ...any) {
	b.events = append(b.events, event{slot, node, fmt.Sprintf(format, args...)})
}

// update returns the pending copy of t, cloning it on first use.
func (b *builder) update(t *api.Task, reason string) *api.Task {
	if u, ok := b.changed[t.GetId()]; ok {
		return u.Task
	}
	u := &TaskUpdate{Task: cloneTask(t), Reason: reason}
	b.changed[t.GetId()] = u
	return u.Task
}

// desired returns t's desired state including this call's pending changes.
func (b *builder) desired(t *api.Task) api.TaskState {
	if u, ok := b.changed[t.GetId()]; ok {
		return u.Task.GetDesiredState()
	}
	return t.GetDesiredState()
}

// setDesired moves t's desired state forward to d. Desired states, like
// observed ones, only move forward (RUNNING -> SHUTDOWN -> REMOVE): a request
// to stop is never taken back by a later rule.
func (b *builder) setDesired(t *api.Task, d api.TaskState, reason string) bool {
	if b.desired(t) >= d {
		return false
	}
	b.update(t, reason).DesiredState = d
	return true
}

func (b *builder) delete(id string) {
	if !b.deleted[id] {
		b.deleted[id] = true
		b.res.Delete = append(b.res.Delete, id)
	}
}

// wakeAt asks to be called again at t.
func (b *builder) wakeAt(t time.Time) {
	if !t.After(b.now) {
		return
	}
	if b.res.NextEvaluation.IsZero() || t.Before(b.res.NextEvaluation) {
		b.res.NextEvaluation = t
	}
}

// result sorts and returns the collected decisions.
func (b *builder) result() Result {
	r := b.res
	for _, u := range b.changed {
		r.Update = append(r.Update, *u)
	}
	byPlace := func(a, c *api.Task) int {
		return cmp.Or(cmp.Compare(a.GetSlot(), c.GetSlot()), cmp.Compare(a.GetNodeId(), c.GetNodeId()),
			cmp.Compare(a.GetId(), c.GetId()))
	}
	slices.SortFunc(r.Create, byPlace)
	slices.SortFunc(r.Update, func(a, c TaskUpdate) int { return byPlace(a.Task, c.Task) })
	slices.Sort(r.Delete)
	slices.SortStableFunc(b.events, func(a, c event) int {
		return cmp.Or(cmp.Compare(a.slot, c.slot), cmp.Compare(a.node, c.node))
	})
	for _, e := range b.events {
		r.Events = append(r.Events, e.text)
	}
	return r
}
