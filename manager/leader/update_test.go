package leader

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeAgents moves every assigned task the way a worker would, until ctx
// ends: tasks of image bad fail as they start, others run; tasks asked to
// stop stop. It stands in for the workers, which cannot run in this package.
func fakeAgents(ctx context.Context, s *raftstore.MemoryStore, bad string) {
	for ctx.Err() == nil {
		_ = s.Update(ctx, func(tx raftstore.WriteTx) error {
			for _, t := range tx.List(raftstore.KindTask) {
				t := t.(*api.Task)
				st := t.GetStatus().GetState()
				var next api.TaskState
				switch {
				case t.GetNodeId() == "" || st.IsTerminal():
					continue
				case t.GetDesiredState() > api.TaskState_RUNNING:
					next = api.TaskState_SHUTDOWN
				case t.GetDesiredState() == api.TaskState_RUNNING && st < api.TaskState_RUNNING:
					next = api.TaskState_RUNNING
					if t.GetSpec().GetContainer().GetImage() == bad {
						next = api.TaskState_FAILED
					}
				default:
					continue
				}
				if err := api.Step(t, &api.TaskStatus{State: next, Timestamp: timestamppb.Now()}); err != nil {
					return err
				}
				if err := tx.Update(t); err != nil {
					return err
				}
			}
			return nil
		})
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUpdateFailureRollsBack: the loop writes the update status the
// orchestrator decides and, under failure action rollback, rolls the
// service back through Config.Rollback; the rollback then rolls out and
// completes. Without the loop's part the status would never leave
// UPDATING and the bad image would stay.
func TestUpdateFailureRollsBack(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var rollbacks []string
	rollback := func(ctx context.Context, id string, version uint64, msg string) error {
		rollbacks = append(rollbacks, msg) // only the loop's goroutine calls it
		return s.Update(ctx, func(tx raftstore.WriteTx) error {
			svc := tx.GetService(id)
			if svc.GetMeta().GetVersion() != version {
				return fmt.Errorf("conflict: version %d, read %d", svc.GetMeta().GetVersion(), version)
			}
			svc.Spec, svc.PreviousSpec = svc.PreviousSpec, svc.Spec
			svc.SpecVersion++
			svc.UpdateStatus = &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_STARTED, StartedAt: timestamppb.Now(), Message: msg}
			return tx.Update(svc)
		})
	}
	done := make(chan error, 1)
	go func() { done <- Config{Store: s, Rollback: rollback}.Run(ctx) }()
	agents := make(chan struct{})
	go func() { fakeAgents(ctx, s, "busybox:bad"); close(agents) }()
	t.Cleanup(func() {
		cancel()
		<-agents
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	addNodes(t, s, 2)
	svc := newService("web", 2)
	svc.Spec.Update = &api.UpdateConfig{Parallelism: 1, Monitor: durationpb.New(200 * time.Millisecond), FailureAction: api.UpdateConfig_ROLLBACK}
	svc.Spec.Rollback = &api.UpdateConfig{Parallelism: 1, Monitor: durationpb.New(200 * time.Millisecond)}
	id := createService(t, s, svc)
	running := func(image string) (bool, string) {
		n := 0
		for _, x := range tasksOf(s, id) {
			if live(x) && x.GetStatus().GetState() == api.TaskState_RUNNING && x.GetSpec().GetContainer().GetImage() == image {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d running of %s", n, image)
	}
	eventually(t, 10*time.Second, func() (bool, string) { return running("busybox:1") })

	update(t, s, func(tx raftstore.ReadTx) *api.Service { return tx.GetService(id) }, func(x *api.Service) {
		x.PreviousSpec = x.Spec
		x.Spec = proto.Clone(x.Spec).(*api.ServiceSpec)
		x.Spec.Task.Container.Image = "busybox:bad"
		x.SpecVersion++
		x.UpdateStatus = nil
	})
	status := func() *api.UpdateStatus {
		var st *api.UpdateStatus
		s.View(func(tx raftstore.ReadTx) { st = tx.GetService(id).GetUpdateStatus() })
		return st
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		st := status()
		return st.GetState() == api.UpdateStatus_ROLLBACK_COMPLETED, fmt.Sprintf("status %v", st)
	})
	if ok, seen := running("busybox:1"); !ok {
		t.Fatalf("after the rollback: %s", seen)
	}
	if len(rollbacks) != 1 || !strings.HasPrefix(rollbacks[0], "update rolled back due to failure or early termination of task ") {
		t.Fatalf("rollbacks asked: %q", rollbacks)
	}
	if st := status(); st.GetCompletedAt() == nil || st.GetMessage() != "rollback completed" {
		t.Fatalf("final status %v", st)
	}
}
