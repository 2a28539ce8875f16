package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// taskRunner drives one task: a thin loop around next. It owns its task's
// status; assignments only bring the manager's side (desired state, spec).
type taskRunner struct {
	rt     Runtime
	net    Network // nil: no overlay networking on this node
	adm    *admission
	report func(taskID string, st *api.TaskStatus)
	log    *slog.Logger
	// granted is when the task got its start slot; zero when it holds none.
	granted time.Time

	updates chan *api.Task // newer assignments of the task (latest wins)
	removed chan struct{}  // closed when the task leaves the assignment set
	done    chan struct{}  // closed when run returns
}

func newTaskRunner(rt Runtime, nw Network, adm *admission, report func(string, *api.TaskStatus), log *slog.Logger) *taskRunner {
	return &taskRunner{rt: rt, net: nw, adm: adm, report: report, log: log,
		updates: make(chan *api.Task, 1), removed: make(chan struct{}), done: make(chan struct{})}
}

// update hands the runner a newer copy of its task without blocking: an
// unread older copy is replaced.
func (r *taskRunner) update(t *api.Task) {
	for {
		select {
		case r.updates <- t:
			return
		default:
		}
		select {
		case <-r.updates:
		default:
		}
	}
}

// merge applies a manager's copy of the task to ours: the manager's fields,
// and the further of the two statuses (after an agent restart the manager
// knows where the task got; otherwise ours is newer).
func merge(cur, in *api.Task) *api.Task {
	t := proto.Clone(in).(*api.Task)
	if cur != nil && cur.GetStatus().GetState() >= in.GetStatus().GetState() {
		t.Status = cur.Status
	}
	return t
}

// apply merges a manager's copy u into t. If the manager's status is
// behind ours, a report of ours was lost (the dispatcher acknowledges before
// its raft write): report it again.
func (r *taskRunner) apply(t, u *api.Task) *api.Task {
	if t.GetStatus() != nil && u.GetStatus().GetState() < t.GetStatus().GetState() {
		r.report(t.GetId(), t.GetStatus())
	}
	return merge(t, u)
}

// run drives t until the task needs nothing more, it is removed from the
// assignments (its container is then stopped and removed), or ctx ends
// (the container is left running for a restarted agent to adopt).
func (r *taskRunner) run(ctx context.Context, t *api.Task) {
	defer close(r.done)
	defer r.release(false)
	t = merge(nil, t)
	var obs observed
	// Find a container left by an earlier run of the agent.
	if c, err := r.rt.Inspect(ctx, ContainerName(t)); err == nil && c.TaskID == t.GetId() {
		obs.container = &c
	}
	// A running container keeps its networks (and is announced again);
	// one that stopped while no agent ran gives them back.
	if obs.container != nil && obs.container.Status == StatusRunning {
		if err := r.attach(ctx, t); err != nil {
			r.log.Warn("worker: re-attach adopted task", "task", t.GetId(), "err", err)
		}
	} else {
		r.detach(ctx, t)
	}
	id := t.GetId()
	for ctx.Err() == nil {
		select {
		case <-r.removed:
			r.teardown(ctx, t, obs.container)
			return
		case u := <-r.updates:
			t = r.apply(t, u)
		default:
		}
		act, st := next(t, obs)
		if st != nil {
			st.Timestamp = timestamppb.Now()
			if err := api.Step(t, st); err != nil {
				// next never proposes a backward step; if it does, stop
				// acting rather than loop.
				r.log.Error("worker: task step refused", "task", id, "err", err)
				act = actWait
			} else {
				r.report(id, t.GetStatus())
				r.log.Debug("worker: task state", "task", id, "state", st.GetState())
			}
		}
		// The start slot is held from PREPARING until the start returned;
		// a task that waits (held at READY, failed) or stops gives it back.
		if act != actContinue && act != actPrepare && act != actStart {
			r.release(false)
		}
		r.serve(ctx, t) // before a stop: no new connection reaches a stopping task
		switch act {
		case actContinue:
		case actAdmit:
			ok, alive := r.admit(ctx, &t)
			if !alive {
				return
			}
			obs.admitted = ok
		case actPrepare:
			obs.err = r.prepareImage(ctx, &t) // pulls a missing image (imagepull.go)
			if obs.err == nil {
				var c ContainerState
				if c, obs.err = r.rt.Create(ctx, t); obs.err == nil {
					obs.container = &c
				}
			}
		case actStart:
			if obs.err = r.attach(ctx, t); obs.err == nil {
				obs.err = r.rt.Start(ctx, obs.container.ID)
			}
			r.release(obs.err == nil)
			r.refresh(ctx, &obs)
			r.settle(ctx, t, &obs)
		case actStop:
			if err := r.rt.Stop(ctx, obs.container.ID, stopGrace(t)); err != nil {
				r.log.Warn("worker: stop task container", "task", id, "err", err)
				if !r.pause(ctx, &t) {
					return
				}
			}
			r.refresh(ctx, &obs)
			r.settle(ctx, t, &obs)
		case actRemove:
			if err := r.rt.Remove(ctx, obs.container.ID); err != nil {
				r.log.Warn("worker: remove task container", "task", id, "err", err)
				if !r.pause(ctx, &t) {
					return
				}
				continue
			}
			obs.container = nil
		case actDone:
			// Nothing more to do; stay until removed so that a later
			// assignment of the same task finds its runner.
			if !r.waitEvent(ctx, &t, nil, &obs) {
				return
			}
		case actWait:
			if !r.waitEvent(ctx, &t, obs.container, &obs) {
				return
			}
			r.settle(ctx, t, &obs)
		}
	}
}

// admit waits in the node's start window for a slot (ok), and meanwhile
// applies updates: a task whose desired state became SHUTDOWN, or that is
// removed, gives up its place. alive is false when ctx ended.
func (r *taskRunner) admit(ctx context.Context, t **api.Task) (ok, alive bool) {
	grant, cancel := r.adm.enqueue()
	for {
		select {
		case <-grant:
			r.granted = time.Now()
			return true, true
		case <-ctx.Done():
			cancel()
			return false, false
		case <-r.removed:
			cancel()
			return false, true
		case u := <-r.updates:
			*t = r.apply(*t, u)
			if (*t).GetDesiredState() >= api.TaskState_SHUTDOWN {
				cancel()
				return false, true
			}
		}
	}
}

// release gives the task's start slot back, if it holds one; started says
// the start completed, so its duration teaches the window.
func (r *taskRunner) release(started bool) {
	if r.granted.IsZero() {
		return
	}
	var took time.Duration
	if started {
		took = max(time.Since(r.granted), time.Nanosecond)
	}
	r.granted = time.Time{}
	r.adm.release(took)
}

// waitEvent blocks until the task is updated or removed, or the running
// container c (if any) exits. It reports false when ctx ended.
func (r *taskRunner) waitEvent(ctx context.Context, t **api.Task, c *ContainerState, obs *observed) bool {
	var exited chan ContainerState
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c != nil && c.Status == StatusRunning {
		exited = make(chan ContainerState, 1)
		go func() {
			wait := r.rt.Wait
			if hw, ok := r.rt.(HealthWaiter); ok && c.Health != "" {
				// A change of health is a step too (starting -> healthy
				// makes the task running; unhealthy fails it).
				wait = func(ctx context.Context, id string) (ContainerState, error) { return hw.WaitHealth(ctx, id, c.Health) }
			}
			st, err := wait(wctx, c.ID)
			if err != nil && errors.Is(err, ErrNotFound) {
				exited <- ContainerState{} // gone: refresh finds nothing
			} else if err == nil {
				exited <- st
			}
		}()
	}
	select {
	case <-ctx.Done():
		return false
	case <-r.removed:
		// The loop's next round tears down.
	case u := <-r.updates:
		*t = r.apply(*t, u)
	case <-exited:
		r.refresh(ctx, obs)
	}
	return true
}

// pause waits a little after a failed runtime call (or for an update).
func (r *taskRunner) pause(ctx context.Context, t **api.Task) bool {
	tm := time.NewTimer(time.Second)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case u := <-r.updates:
		*t = r.apply(*t, u)
	case <-r.removed:
	case <-tm.C:
	}
	return true
}

// refresh re-reads the task's container.
func (r *taskRunner) refresh(ctx context.Context, obs *observed) {
	if obs.container == nil {
		return
	}
	c, err := r.rt.Inspect(ctx, obs.container.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		obs.container = nil
	case err == nil:
		obs.container = &c
	}
}

// teardown stops and removes the container of a task that left the
// assignment set (finished and no longer wanted, or deleted).
func (r *taskRunner) teardown(ctx context.Context, t *api.Task, c *ContainerState) {
	defer r.detach(ctx, t)
	if c == nil {
		return
	}
	// c may be stale: Stop is a no-op on a container that does not run.
	if err := r.rt.Stop(ctx, c.ID, stopGrace(t)); err != nil {
		r.log.Warn("worker: stop removed task's container", "task", t.GetId(), "err", err)
	}
	if err := r.rt.Remove(ctx, c.ID); err != nil {
		r.log.Warn("worker: remove removed task's container", "task", t.GetId(), "err", err)
	}
}

// attach joins the task's container to its networks before it starts.
func (r *taskRunner) attach(ctx context.Context, t *api.Task) error {
	if len(t.GetNetworks()) == 0 {
		return nil
	}
	if r.net == nil {
		return errors.New("this node has no overlay networking: cannot attach the task to its networks")
	}
	return r.net.Attach(ctx, t)
}

// detach gives the task's networks back (idempotent).
func (r *taskRunner) detach(ctx context.Context, t *api.Task) {
	if len(t.GetNetworks()) == 0 || r.net == nil {
		return
	}
	if err := r.net.Detach(context.WithoutCancel(ctx), t); err != nil {
		r.log.Warn("worker: detach task from its networks", "task", t.GetId(), "err", err)
	}
}

// settle detaches the task's networks once its container no longer runs
// (it exited, failed to start, or is gone).
func (r *taskRunner) settle(ctx context.Context, t *api.Task, obs *observed) {
	if obs.container == nil || obs.container.Status != StatusRunning {
		r.detach(ctx, t)
	}
}
