package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultMonitor is how long an updated task is watched for failure when
// the update config sets no monitor, as in Docker.
const DefaultMonitor = 5 * time.Second

// policy is the update (or, during a rollback, the rollback) config in
// force, with Docker's defaults filled in.
type policy struct {
	parallelism     int // 0: all at once
	delay, monitor  time.Duration
	maxFailureRatio float32
	action          api.UpdateConfig_FailureAction
	startFirst      bool
}

// rollingBack reports whether a rollback of svc is under way or paused.
func rollingBack(svc *api.Service) bool {
	switch svc.GetUpdateStatus().GetState() {
	case api.UpdateStatus_ROLLBACK_STARTED, api.UpdateStatus_ROLLBACK_PAUSED:
		return true
	}
	return false
}

// policyOf is the config in force: the update config's, or while a
// rollback runs (`service rollback`, failure action rollback) the rollback
// config's, as Docker's; no config means parallelism 1 and a 5 s monitor.
func policyOf(svc *api.Service) policy {
	u := svc.GetSpec().GetUpdate()
	if rollingBack(svc) {
		u = svc.GetSpec().GetRollback()
	}
	p := policy{parallelism: 1, monitor: DefaultMonitor}
	if u == nil {
		return p
	}
	p.parallelism = int(u.GetParallelism())
	p.delay = max(u.GetDelay().AsDuration(), 0)
	if u.GetMonitor() != nil {
		p.monitor = max(u.GetMonitor().AsDuration(), 0)
	}
	p.maxFailureRatio = u.GetMaxFailureRatio()
	p.action = u.GetFailureAction()
	if p.action == api.UpdateConfig_ROLLBACK && rollingBack(svc) {
		p.action = api.UpdateConfig_PAUSE // a rollback does not roll itself back
	}
	p.startFirst = u.GetOrder() == api.UpdateConfig_START_FIRST
	return p
}

// rollout is one call's view of the service's rolling update: the policy,
// the update status as this call leaves it, and which replicas' new tasks
// failed. The update in force is the one whose status is UPDATING, PAUSED
// or a rollback's; its replacements are the tasks of the current template
// made since its status's started_at.
type rollout struct {
	pol   policy
	state api.UpdateStatus_State
	since time.Time // zero: no update in force
	// failed are the replicas whose replacement failed: ended on its own
	// before it ran, or within the monitor window after it started. first
	// names the earliest such task, for the status message.
	failed map[*group]bool
	first  *api.Task
	// delayEnd is the earliest time a replica busy only with the update
	// delay frees up; zero if none is.
	delayEnd time.Time
}

func (r *rollout) active() bool {
	switch r.state {
	case api.UpdateStatus_UPDATING, api.UpdateStatus_ROLLBACK_STARTED:
		return true
	}
	return false
}

func (r *rollout) paused() bool {
	return r.state == api.UpdateStatus_PAUSED || r.state == api.UpdateStatus_ROLLBACK_PAUSED
}

// replacement reports whether t was made by the update in force.
func (r *rollout) replacement(t *api.Task) bool {
	return !r.since.IsZero() && !created(t).Before(r.since)
}

// newRollout reads svc's update status and finds the failed replacements
// among groups.
func newRollout(svc *api.Service, groups []*group) *rollout {
	r := &rollout{pol: policyOf(svc), state: svc.GetUpdateStatus().GetState(), failed: map[*group]bool{}}
	if r.active() || r.paused() {
		if ts := svc.GetUpdateStatus().GetStartedAt(); ts != nil {
			r.since = ts.AsTime()
		}
	}
	if r.since.IsZero() {
		return r
	}
	for _, g := range groups {
		for _, t := range g.tasks {
			if t.GetDesiredState() >= api.TaskState_REMOVE || !endedOnItsOwn(t) || Dirty(svc, t) || !r.replacement(t) {
				continue
			}
			if s := t.GetStatus().GetStartedAt(); s != nil && endedAt(t, time.Time{}).Sub(s.AsTime()) > r.pol.monitor {
				continue // it ran through the monitor window: not the update's failure
			}
			r.failed[g] = true
			if r.first == nil || newestFirst(r.first, t) < 0 {
				r.first = t
			}
		}
	}
	return r
}

// startedAt is when t started running: its status's started_at, or for a
// task stored before that field existed, its status time.
func startedAt(t *api.Task) time.Time {
	if s := t.GetStatus().GetStartedAt(); s != nil {
		return s.AsTime()
	}
	return endedAt(t, time.Time{})
}

// progress reports where g's replacement stands. busy: it still counts
// against the update's parallelism, because it does not run yet or started
// less than the update delay ago. hold: the update cannot be called
// complete yet, because it does not run yet, is inside the monitor window,
// or the task it replaced (start-first) is still stopping. A replica whose
// replacement failed is neither under failure action continue: the update
// goes on without it.
func (b *builder) progress(svc *api.Service, r *rollout, g *group, nodes map[string]*api.Node) (busy, hold bool) {
	cur := g.current
	if cur == nil || isTerminal(cur) || Dirty(svc, cur) {
		return false, false
	}
	if r.active() && slices.ContainsFunc(g.tasks, func(t *api.Task) bool {
		return t != cur && t.GetDesiredState() == api.TaskState_SHUTDOWN && Dirty(svc, t) && !stopped(t, nodes)
	}) {
		hold = true
	}
	if r.failed[g] && r.pol.action == api.UpdateConfig_CONTINUE {
		return false, false
	}
	if cur.GetStatus().GetState() < api.TaskState_RUNNING {
		in := r.replacement(cur) || updating(svc, g)
		return in, in || hold
	}
	if !r.replacement(cur) {
		return false, hold
	}
	if at := startedAt(cur).Add(r.pol.delay); b.now.Before(at) {
		busy = true
		if r.delayEnd.IsZero() || at.Before(r.delayEnd) {
			r.delayEnd = at
		}
	}
	if at := startedAt(cur).Add(r.pol.monitor); b.now.Before(at) {
		b.wakeAt(at)
		hold = true
	}
	return busy, hold
}

// setStatus records svc's new update status in the Result. An update
// starts now; every later state keeps its start.
func (b *builder) setStatus(svc *api.Service, r *rollout, state api.UpdateStatus_State, msg string) {
	st := &api.UpdateStatus{State: state, Message: msg, StartedAt: svc.GetUpdateStatus().GetStartedAt()}
	switch state {
	case api.UpdateStatus_UPDATING:
		st.StartedAt = timestamppb.New(b.now)
		r.since = b.now
	case api.UpdateStatus_COMPLETED, api.UpdateStatus_ROLLBACK_COMPLETED:
		st.CompletedAt = timestamppb.New(b.now)
	}
	r.state = state
	b.res.UpdateStatus = st
	b.logf(0, "", "%s: update %s (%s)", serviceName(svc), state, msg)
}

// failureAction applies the update's failure action once more than its
// max failure ratio of total replicas failed (any failure at ratio 0):
// pause sets the status to paused, rollback asks the loop to roll the
// service back (and the caller then decides nothing else: it reports true),
// continue does nothing here. A rollback has no previous spec to roll back
// to without one, and pauses instead.
func (b *builder) failureAction(svc *api.Service, r *rollout, total int) (rollback bool) {
	if !r.active() || len(r.failed) == 0 || float64(len(r.failed)) <= float64(r.pol.maxFailureRatio)*float64(total) {
		return false
	}
	cause := "failure or early termination of task " + r.first.GetId()
	switch {
	case r.pol.action == api.UpdateConfig_CONTINUE:
	case r.pol.action == api.UpdateConfig_ROLLBACK && svc.GetPreviousSpec() != nil:
		b.res.Rollback = "update rolled back due to " + cause
		b.logf(0, "", "%s: %s", serviceName(svc), b.res.Rollback)
		return true
	case r.state == api.UpdateStatus_ROLLBACK_STARTED:
		b.setStatus(svc, r, api.UpdateStatus_ROLLBACK_PAUSED, "rollback paused due to "+cause)
	default:
		b.setStatus(svc, r, api.UpdateStatus_PAUSED, "update paused due to "+cause)
	}
	return false
}

// rollout moves svc's rolling update on: it starts one when outdated
// replicas appear, replaces the next outdated replicas within the
// parallelism left after busy ones, and calls the update complete when
// nothing is outdated, in flight or monitored (holding says whether some
// replica is still in flight or monitored) and the call changes no task.
// A paused update does nothing.
func (b *builder) rollout(svc *api.Service, r *rollout, outdated []*group, busy int, holding bool, nodes map[string]*api.Node) {
	if len(outdated) > 0 && !r.active() && !r.paused() {
		b.setStatus(svc, r, api.UpdateStatus_UPDATING, "update in progress")
	}
	if !r.active() {
		return
	}
	b.rollingUpdate(svc, r, outdated, busy, nodes)
	// A call that changes tasks (a restart, a node's loss) is not the end
	// of the update: the next one, on what it wrote, may be.
	if quiet := len(b.res.Create) == 0 && len(b.changed) == 0; len(outdated) == 0 && !holding && quiet {
		if r.state == api.UpdateStatus_ROLLBACK_STARTED {
			b.setStatus(svc, r, api.UpdateStatus_ROLLBACK_COMPLETED, "rollback completed")
		} else {
			b.setStatus(svc, r, api.UpdateStatus_COMPLETED, "update completed")
		}
		return
	}
	b.res.WaitsForRunning = true
}

// rollingUpdate replaces outdated slots within the parallelism left after
// busy slots: stop-first, or start-first where the policy says so and the
// old task runs. Tasks not running go first: replacing them costs no running
// replica; unassigned ones are replaced whatever the parallelism.
func (b *builder) rollingUpdate(svc *api.Service, r *rollout, outdated []*group, busy int, nodes map[string]*api.Node) {
	running := func(g *group) bool { return g.current.GetStatus().GetState() == api.TaskState_RUNNING }
	slices.SortStableFunc(outdated, func(a, c *group) int {
		if ra, rc := running(a), running(c); ra != rc {
			if ra {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.slot, c.slot)
	})
	p := r.pol.parallelism
	for _, g := range outdated {
		// A task never assigned serves nothing: replacing it costs no
		// availability, so parallelism does not hold it back (else a stalled
		// update would keep outdated tasks pending forever).
		if unassigned := g.current.GetNodeId() == ""; !unassigned {
			if p > 0 && busy >= p {
				b.wakeAt(r.delayEnd)
				continue
			}
			busy++
		}
		if r.pol.startFirst && running(g) && !nodeDrained(nodes[g.current.GetNodeId()]) {
			t := b.newTask(svc, g.slot, g.node, api.TaskState_RUNNING)
			b.logf(g.slot, g.node, "%s: start %s before %s stops (service updated, start-first)", g.where(svc), t.GetId(), g.current.GetId())
			continue
		}
		b.vacate(svc, g, nodes, "service updated")
	}
}

// keptForStartFirst is the task a start-first update keeps running in g
// while g's current task (its replacement) has not reached RUNNING: the
// newest older task that runs and is still desired running, made from
// another template. Under a stop-first policy only one that matches the
// service's template again (a rollback caught the replacement before it
// ran) is kept; any other is superseded as usual.
func keptForStartFirst(svc *api.Service, r *rollout, g *group, nodes map[string]*api.Node) *api.Task {
	cur := g.current
	if cur == nil || cur.GetStatus().GetState() == api.TaskState_RUNNING {
		return nil
	}
	for i := len(g.tasks) - 1; i >= 0; i-- {
		t := g.tasks[i]
		if t != cur && t.GetDesiredState() == api.TaskState_RUNNING && t.GetStatus().GetState() == api.TaskState_RUNNING &&
			!sameTemplate(t, cur) && !stopped(t, nodes) {
			if r.pol.startFirst || !Dirty(svc, t) {
				return t
			}
			return nil
		}
	}
	return nil
}

// revertToKept handles a start-first replica whose replacement has become
// outdated itself (the service was rolled back) while the task it was to
// replace still runs and matches the service again: the replacement is shut
// down and the kept task, still desired running, becomes g's current task,
// to which the caller then applies the usual rules.
func (b *builder) revertToKept(svc *api.Service, g *group) {
	cur, kept := g.current, g.kept
	if kept == nil || !Dirty(svc, cur) || Dirty(svc, kept) {
		return
	}
	if b.setDesired(cur, api.TaskState_SHUTDOWN, fmt.Sprintf("rolled back: %s runs the service's template", kept.GetId())) {
		b.logf(g.slot, g.node, "%s: shut down %s, keep %s (rolled back before the replacement ran)", g.where(svc), cur.GetId(), kept.GetId())
	}
	g.current, g.kept = kept, nil
}
