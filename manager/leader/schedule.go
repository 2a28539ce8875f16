package leader

import (
	"context"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
	"github.com/shoal-project/shoal/raftstore"
	"github.com/shoal-project/shoal/scheduler"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// AssignedMessage is the status message of a task the scheduler placed.
const AssignedMessage = "scheduler assigned task to node"

// PendingMessage is the status message of a task no node can take; the
// reason is in its Err, as Swarm puts it.
const PendingMessage = "pending task scheduling"

// waitsForScheduler reports whether t is the scheduler's to place: not yet
// assigned (NEW or PENDING) and wanted (desired READY or RUNNING). NEW is
// taken too: the allocator loop moves a task to PENDING only when it cannot
// allocate it (the reason in Err), and leaves an allocated task NEW, so that
// tasks without networks cost no allocator write; a task on networks is the
// scheduler's only once allocator.Allocated. Global services' tasks already name their node;
// the scheduler only checks them.
func waitsForScheduler(t *api.Task) bool {
	if t == nil {
		return false
	}
	s := t.GetStatus().GetState()
	d := t.GetDesiredState()
	// A task on networks waits for its addresses first (allocator loop).
	return (s == api.TaskState_NEW || s == api.TaskState_PENDING) &&
		(d == api.TaskState_READY || d == api.TaskState_RUNNING) && allocator.Allocated(t)
}

type schedulerLoop struct {
	cfg Config
}

func newSchedulerLoop(c Config) *loop {
	s := &schedulerLoop{cfg: c}
	return c.newLoop("scheduler", []raftstore.Kind{raftstore.KindNode, raftstore.KindTask}, markScheduler, s.pass)
}

// markScheduler: a pass is worth running when a task starts waiting, a task
// stops occupying a node (its resources and ports are free again), or a node
// changes. Status reports of running tasks, the bulk of the writes, are not.
func markScheduler(ev raftstore.Event, d *dirty) bool {
	switch ev.Kind {
	case raftstore.KindTask:
		t, _ := ev.Object.(*api.Task)
		old, _ := ev.Old.(*api.Task)
		if waitsForScheduler(t) ||
			(old != nil && scheduler.Occupies(old) && (t == nil || !scheduler.Occupies(t))) {
			d.all = true
			return true
		}
		return false
	}
	d.all = true // a node
	return true
}

// pass schedules every waiting task in one call and writes the decisions.
func (s *schedulerLoop) pass(ctx context.Context, _ dirty) (time.Time, error) {
	var (
		nodes   []*api.Node
		tasks   []*api.Task
		waiting []*api.Task
	)
	s.cfg.Store.View(func(tx raftstore.ReadTx) {
		tx.ForEach(raftstore.KindNode, func(x raftstore.Object) bool {
			nodes = append(nodes, x.(*api.Node))
			return true
		})
		tx.ForEach(raftstore.KindTask, func(x raftstore.Object) bool {
			t := x.(*api.Task)
			tasks = append(tasks, t)
			if waitsForScheduler(t) {
				waiting = append(waiting, t)
			}
			return true
		})
	})
	if len(waiting) == 0 {
		return time.Time{}, nil
	}
	snap := scheduler.NewSnapshot(nodes, tasks)
	snap.CountFailures(tasks, s.cfg.Clock.Now().Add(-scheduler.FailureWindow))
	res := scheduler.Schedule(snap, waiting)

	now := timestamppb.New(s.cfg.Clock.Now())
	var ops []op
	for _, t := range waiting {
		var (
			state = api.TaskState_PENDING
			msg   string
			err   string
			node  = t.GetNodeId()
		)
		if n, ok := res.Decisions[t.GetId()]; ok {
			state, msg, node = api.TaskState_ASSIGNED, AssignedMessage, n
		} else if reason, ok := res.Unplaced[t.GetId()]; ok {
			// Only a new reason is written: rewriting the same message on
			// every pass would turn each unrelated change into a write of
			// every unplaceable task.
			if t.GetStatus().GetState() == api.TaskState_PENDING && t.GetStatus().GetErr() == reason {
				continue
			}
			// As Swarm: the reason is the task's error (docker service
			// ps's ERROR column), the message says what it waits for.
			msg, err = PendingMessage, reason
		} else {
			continue
		}
		nt := proto.Clone(t).(*api.Task)
		nt.NodeId = node
		st := &api.TaskStatus{}
		if t.GetStatus() != nil {
			st = proto.Clone(t.GetStatus()).(*api.TaskStatus)
		}
		st.State, st.Message, st.Err, st.Timestamp = state, msg, err, now
		nt.Status = st
		ops = append(ops, op{update: nt})
	}
	return time.Time{}, write(ctx, s.cfg.Store, ops)
}
