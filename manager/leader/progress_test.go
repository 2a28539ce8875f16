package leader

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// report sets task id's observed state, as the dispatcher does for an agent.
func report(t *testing.T, s *raftstore.MemoryStore, id string, state api.TaskState) {
	t.Helper()
	update(t, s, func(tx raftstore.ReadTx) *api.Task { return tx.GetTask(id) }, func(x *api.Task) {
		x.Status = &api.TaskStatus{State: state, Message: "reported"}
	})
}

// TestRunningReportCostsNoPass: a task reporting its way to RUNNING does
// not make the orchestrator reconcile (it can change no decision); a task
// that FAILED does, and is replaced.
func TestRunningReportCostsNoPass(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	addNodes(t, s, 1)
	svc := createService(t, s, newService("web", 1))

	var (
		mu     sync.Mutex
		passes int
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return passes }
	l := newOrchestratorLoop(Config{Store: s}.withDefaults())
	inner := l.pass
	l.pass = func(ctx context.Context, d dirty) (time.Time, error) {
		mu.Lock()
		passes++
		mu.Unlock()
		return inner(ctx, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var id string
	eventually(t, 5*time.Second, func() (bool, string) {
		ts := tasksOf(s, svc)
		if len(ts) == 1 {
			id = ts[0].GetId()
		}
		return len(ts) == 1, fmt.Sprintf("%d tasks", len(ts))
	})
	// Place it by hand (no scheduler loop here): a node change, worth a pass.
	before := count()
	update(t, s, func(tx raftstore.ReadTx) *api.Task { return tx.GetTask(id) }, func(x *api.Task) {
		x.NodeId, x.Status = "node00", &api.TaskStatus{State: api.TaskState_ASSIGNED}
	})
	eventually(t, 5*time.Second, func() (bool, string) { return count() > before, "no pass after the assignment" })

	// The agent's reports up to RUNNING: no pass. Ten debounce periods is
	// ample for a pass that would run; this asserts absence, not speed.
	before = count()
	for _, st := range []api.TaskState{api.TaskState_ACCEPTED, api.TaskState_PREPARING, api.TaskState_STARTING, api.TaskState_RUNNING, api.TaskState_RUNNING} {
		report(t, s, id, st)
	}
	time.Sleep(10 * DefaultDebounce)
	if n := count() - before; n != 0 {
		t.Fatalf("%d orchestrator passes for reports up to RUNNING, want 0", n)
	}

	// FAILED: a pass, and a replacement in the slot.
	report(t, s, id, api.TaskState_FAILED)
	eventually(t, 5*time.Second, func() (bool, string) {
		ts := tasksOf(s, svc)
		return count() > before && len(ts) == 2, fmt.Sprintf("%d passes, %d tasks", count()-before, len(ts))
	})
}

// TestRollingUpdateAdvancesOnRunning: with parallelism 1 the next slot is
// replaced once the previous replacement reports RUNNING. That report is
// the only event that moves the update on, so it must still cost a pass.
func TestRollingUpdateAdvancesOnRunning(t *testing.T) {
	s := start(t)
	addNodes(t, s, 3)
	svc := createService(t, s, newService("web", 3))
	// runAll reports RUNNING for every assigned task wanted running, and
	// SHUTDOWN for those asked to stop, as agents would. It first lets the
	// loops settle, so that the RUNNING report comes after the pass that
	// saw the assignment and is alone in moving the update on.
	runAll := func() {
		time.Sleep(4 * DefaultDebounce)
		for _, x := range tasksOf(s, svc) {
			st := x.GetStatus().GetState()
			switch {
			case x.GetDesiredState() == api.TaskState_RUNNING && st >= api.TaskState_ASSIGNED && st < api.TaskState_RUNNING:
				report(t, s, x.GetId(), api.TaskState_RUNNING)
			case x.GetDesiredState() > api.TaskState_RUNNING && st <= api.TaskState_RUNNING && x.GetNodeId() != "":
				report(t, s, x.GetId(), api.TaskState_SHUTDOWN)
			}
		}
	}
	running := func(image string) (int, string) {
		n := 0
		for _, x := range tasksOf(s, svc) {
			if x.GetDesiredState() == api.TaskState_RUNNING && x.GetStatus().GetState() == api.TaskState_RUNNING &&
				x.GetSpec().GetContainer().GetImage() == image {
				n++
			}
		}
		return n, fmt.Sprintf("%d running %s of %d tasks", n, image, len(tasksOf(s, svc)))
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		runAll()
		n, seen := running("busybox:1")
		return n == 3, seen
	})
	update(t, s, func(tx raftstore.ReadTx) *api.Service { return tx.GetService(svc) }, func(o *api.Service) {
		o.Spec.Task.Container.Image = "busybox:2"
		o.Spec.Update = &api.UpdateConfig{Parallelism: 1}
		o.SpecVersion++
	})
	eventually(t, 10*time.Second, func() (bool, string) {
		runAll()
		n, seen := running("busybox:2")
		return n == 3, seen
	})
}
