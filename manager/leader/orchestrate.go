package leader

import (
	"context"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/orchestrator"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// orchestratorLoop keeps services' tasks as their specs say. Its state is
// owned by the loop's goroutine.
type orchestratorLoop struct {
	cfg Config
	// nextEval is each service's Result.NextEvaluation, so a pass over a
	// few services still arms the timer for the earliest of all of them.
	nextEval map[string]time.Time
	// waitsRunning holds the services whose last reconcile held a rolling
	// update back until replacements run (Result.WaitsForRunning): only
	// for those is a task reaching RUNNING worth a pass.
	waitsRunning map[string]bool
}

func newOrchestratorLoop(c Config) *loop {
	o := &orchestratorLoop{cfg: c, nextEval: map[string]time.Time{}, waitsRunning: map[string]bool{}}
	return c.newLoop("orchestrator", []raftstore.Kind{raftstore.KindCluster, raftstore.KindNode, raftstore.KindService, raftstore.KindTask}, o.mark, o.pass)
}

// mark: a service or its tasks changed -> that service; a node or the
// cluster (history limit) changed -> every service. A task's progress
// towards RUNNING is the bulk of all writes (every start reports it) and
// changes no decision (progressOnly), so it costs no pass, unless the
// service's rolling update waits for exactly that.
func (o *orchestratorLoop) mark(ev raftstore.Event, d *dirty) bool {
	switch ev.Kind {
	case raftstore.KindService:
		if ev.Object != nil {
			d.service(ev.Object.GetId())
		} else {
			d.service(ev.Old.GetId())
		}
	case raftstore.KindTask:
		old, _ := ev.Old.(*api.Task)
		t, _ := ev.Object.(*api.Task)
		if progressOnly(old, t) && !(t.GetStatus().GetState() == api.TaskState_RUNNING &&
			old.GetStatus().GetState() < api.TaskState_RUNNING && o.waitsRunning[t.GetServiceId()]) {
			return false
		}
		for _, x := range []*api.Task{t, old} {
			if x != nil {
				d.service(x.GetServiceId())
			}
		}
	default:
		d.all = true
	}
	return true
}

// progressOnly reports whether the update from old to t is a wanted task's
// status moving forward from ASSIGNED up to RUNNING on the same node, with
// nothing else changed: no reconcile rule decides differently for it (the
// restart policy waits for a terminal state, a lost or drained node for a
// node change), except a rolling update waiting for RUNNING, which the
// caller checks. Failures, completions and shutdowns are terminal states or
// desired-state changes, which are never progress.
func progressOnly(old, t *api.Task) bool {
	if old == nil || t == nil {
		return false
	}
	os, ns := old.GetStatus().GetState(), t.GetStatus().GetState()
	return old.GetDesiredState() == api.TaskState_RUNNING && t.GetDesiredState() == api.TaskState_RUNNING &&
		os >= api.TaskState_ASSIGNED && os <= ns && ns <= api.TaskState_RUNNING &&
		old.GetNodeId() == t.GetNodeId() && old.GetSlot() == t.GetSlot() &&
		old.GetServiceId() == t.GetServiceId() && old.GetSpecVersion() == t.GetSpecVersion() &&
		proto.Equal(old.GetSpec(), t.GetSpec()) && proto.Equal(old.GetEndpoint(), t.GetEndpoint())
}

// pass reconciles the dirty services, reaps history and orphans tasks of
// lost nodes, and writes all of it.
func (o *orchestratorLoop) pass(ctx context.Context, d dirty) (time.Time, error) {
	now := o.cfg.Clock.Now()
	var (
		cluster   *api.Cluster
		services  []*api.Service
		nodes     []*api.Node
		tasks     []*api.Task
		byService = map[string][]*api.Task{}
	)
	// ForEach hands out the store's shared objects: the decision functions
	// never modify their inputs and return copies for what they change.
	o.cfg.Store.View(func(tx raftstore.ReadTx) {
		if cs := tx.Clusters(); len(cs) > 0 {
			cluster = cs[0]
		}
		tx.ForEach(raftstore.KindService, func(x raftstore.Object) bool {
			services = append(services, x.(*api.Service))
			return true
		})
		tx.ForEach(raftstore.KindNode, func(x raftstore.Object) bool {
			nodes = append(nodes, x.(*api.Node))
			return true
		})
		tx.ForEach(raftstore.KindTask, func(x raftstore.Object) bool {
			t := x.(*api.Task)
			tasks = append(tasks, t)
			byService[t.GetServiceId()] = append(byService[t.GetServiceId()], t)
			return true
		})
	})

	var ops []op
	// A task is written at most once per pass: the reaper and the orphaner
	// look at every task and may pick one a reconcile just changed; the next
	// pass sees the result and decides again.
	touched := map[string]bool{}
	var created []*api.Task
	add := func(r orchestrator.Result) {
		for _, t := range r.Create {
			touched[t.GetId()] = true
			ops = append(ops, op{create: t})
			created = append(created, t)
		}
		for _, u := range r.Update {
			if touched[u.Task.GetId()] {
				continue
			}
			touched[u.Task.GetId()] = true
			ops = append(ops, op{update: u.Task})
		}
		for _, id := range r.Delete {
			if touched[id] {
				continue
			}
			touched[id] = true
			ops = append(ops, op{delete: id})
		}
	}

	live := map[string]bool{}
	var rollbacks []rollback
	ids := orchestrator.IDFunc(o.cfg.NewID)
	for _, svc := range services {
		live[svc.GetId()] = true
		if _, ok := d.services[svc.GetId()]; !d.all && !ok {
			continue
		}
		var (
			r   orchestrator.Result
			err error
		)
		switch svc.GetSpec().GetMode().(type) {
		case *api.ServiceSpec_Global:
			r, err = orchestrator.ReconcileGlobal(svc, nodes, byService[svc.GetId()], now, ids)
		default:
			r, err = orchestrator.ReconcileReplicated(svc, nodes, byService[svc.GetId()], now, ids)
		}
		if err != nil {
			// A spec the control API should have refused; retrying will
			// not help until the service changes, which marks it again.
			o.cfg.Logger.Warn("leader: reconcile failed", "service", svc.GetId(), "err", err)
			delete(o.nextEval, svc.GetId())
			continue
		}
		add(r)
		if r.UpdateStatus != nil {
			up := proto.Clone(svc).(*api.Service)
			up.UpdateStatus = r.UpdateStatus
			ops = append(ops, op{service: up})
		}
		if r.Rollback != "" {
			rollbacks = append(rollbacks, rollback{svc.GetId(), svc.GetMeta().GetVersion(), r.Rollback})
		}
		if r.WaitsForRunning {
			o.waitsRunning[svc.GetId()] = true
		} else {
			delete(o.waitsRunning, svc.GetId())
		}
		if r.NextEvaluation.IsZero() {
			delete(o.nextEval, svc.GetId())
		} else {
			o.nextEval[svc.GetId()] = r.NextEvaluation
		}
	}
	for id := range o.nextEval {
		if !live[id] && id != orphanKey {
			delete(o.nextEval, id)
		}
	}
	for id := range o.waitsRunning {
		if !live[id] {
			delete(o.waitsRunning, id)
		}
	}

	orphans := orchestrator.OrphanTasks(nodes, tasks, now, orchestrator.DefaultOrphanPeriod)
	add(orphans)
	if orphans.NextEvaluation.IsZero() {
		delete(o.nextEval, orphanKey)
	} else {
		o.nextEval[orphanKey] = orphans.NextEvaluation
	}
	// The reaper counts the replacements this pass creates: trimmed in the
	// same write, a restarting slot never holds more than the limit.
	add(orchestrator.ReapHistory(services, append(tasks, created...), orchestrator.HistoryLimit(cluster)))

	if err := write(ctx, o.cfg.Store, ops); err != nil {
		return time.Time{}, err
	}
	for _, rb := range rollbacks {
		o.rollback(ctx, rb)
	}
	var next time.Time
	for _, t := range o.nextEval {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, nil
}

// orphanKey holds OrphanTasks' NextEvaluation in nextEval; it cannot clash
// with a service ID (those are base-36 without spaces).
const orphanKey = "orphan tasks"

// rollback is a Result.Rollback: roll service id, as read at version, back.
type rollback struct {
	id      string
	version uint64
	message string
}

// rollback rolls a service back with Config.Rollback. A failure is logged
// only: the service changed meanwhile (a conflict, and its change marks it
// for another pass, which decides again) or the store is unavailable (the
// loop's next pass, on this leader or the next, finds the same failures).
func (o *orchestratorLoop) rollback(ctx context.Context, rb rollback) {
	if o.cfg.Rollback == nil {
		o.cfg.Logger.Warn("leader: rollback asked for but not configured", "service", rb.id, "reason", rb.message)
		return
	}
	if err := o.cfg.Rollback(ctx, rb.id, rb.version, rb.message); err != nil {
		o.cfg.Logger.Warn("leader: rollback failed", "service", rb.id, "err", err)
	}
}
