package api

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestCheckTransition(t *testing.T) {
	const run = TaskState_RUNNING
	tests := []struct {
		from, to, desired TaskState
		ok                bool
	}{
		{TaskState_NEW, TaskState_PENDING, run, true},
		{TaskState_PENDING, TaskState_ASSIGNED, run, true},
		{TaskState_ASSIGNED, TaskState_RUNNING, run, true}, // skipping is fine
		{TaskState_PREPARING, TaskState_FAILED, run, true},
		{TaskState_RUNNING, TaskState_RUNNING, run, true}, // refresh
		{TaskState_RUNNING, TaskState_COMPLETE, run, true},
		{TaskState_RUNNING, TaskState_ORPHANED, run, true},
		{TaskState_RUNNING, TaskState_SHUTDOWN, TaskState_SHUTDOWN, true},
		{TaskState_FAILED, TaskState_FAILED, run, true},
		{TaskState_RUNNING, TaskState_STARTING, run, false}, // backwards
		{TaskState_ASSIGNED, TaskState_PENDING, run, false},
		{TaskState_COMPLETE, TaskState_FAILED, run, false}, // terminal is final
		{TaskState_FAILED, TaskState_ORPHANED, run, false}, // terminal is final
		{TaskState_RUNNING, TaskState_REMOVE, run, false},  // desired-only
		{TaskState_NEW, TaskState(13), run, false},         // unknown
		{TaskState_PREPARING, TaskState_READY, TaskState_READY, true},
		{TaskState_READY, TaskState_STARTING, TaskState_READY, false}, // held
		{TaskState_READY, TaskState_FAILED, TaskState_READY, true},
		{TaskState_READY, TaskState_STARTING, TaskState_NEW, true},
	}
	for _, tt := range tests {
		err := CheckTransition(tt.from, tt.to, tt.desired)
		if (err == nil) != tt.ok {
			t.Errorf("%s -> %s (desired %s): err = %v, want ok=%v", tt.from, tt.to, tt.desired, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTransition) {
			t.Errorf("%s -> %s: %v does not match ErrInvalidTransition", tt.from, tt.to, err)
		}
	}
}

func TestStep(t *testing.T) {
	task := &Task{Id: "t1", DesiredState: TaskState_RUNNING, Status: &TaskStatus{State: TaskState_ASSIGNED}}
	next := &TaskStatus{State: TaskState_RUNNING, Message: "started",
		ContainerStatus: &ContainerStatus{ContainerId: "c1", Pid: 42}}
	if err := Step(task, next); err != nil {
		t.Fatal(err)
	}
	next.Message = "changed later" // Step copied it
	if task.Status.Message != "started" || task.Status.ContainerStatus.GetPid() != 42 {
		t.Fatalf("status after step: %v", task.Status)
	}

	err := Step(task, &TaskStatus{State: TaskState_ACCEPTED, Message: "late"})
	var te *TransitionError
	if !errors.As(err, &te) || te.TaskID != "t1" || te.From != TaskState_RUNNING || te.To != TaskState_ACCEPTED {
		t.Fatalf("backward step: err = %#v", err)
	}
	if task.Status.State != TaskState_RUNNING || task.Status.Message != "started" {
		t.Fatalf("refused step changed the task: %v", task.Status)
	}
	if GRPCCode(err) != codes.FailedPrecondition {
		t.Fatalf("transition error code = %v", GRPCCode(err))
	}

	// A task without a status is NEW.
	fresh := &Task{Id: "t2"}
	if err := Step(fresh, &TaskStatus{State: TaskState_PENDING}); err != nil {
		t.Fatal(err)
	}
	if err := Step(nil, &TaskStatus{}); err == nil {
		t.Fatal("nil task accepted")
	}
}

// TestStepStartedAt: started_at is the first RUNNING status's time, kept on
// every later status; what the reporter puts there is ignored.
func TestStepStartedAt(t *testing.T) {
	at := func(sec int64) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: sec} }
	task := &Task{Id: "t1", DesiredState: TaskState_RUNNING, Status: &TaskStatus{State: TaskState_ASSIGNED}}
	steps := []struct {
		status *TaskStatus
		want   *timestamppb.Timestamp
	}{
		{&TaskStatus{State: TaskState_STARTING, Timestamp: at(10), StartedAt: at(1)}, nil},
		{&TaskStatus{State: TaskState_RUNNING, Timestamp: at(20), StartedAt: at(2)}, at(20)},
		{&TaskStatus{State: TaskState_RUNNING, Timestamp: at(30), Message: "again"}, at(20)},
		{&TaskStatus{State: TaskState_FAILED, Timestamp: at(40), StartedAt: at(3)}, at(20)},
	}
	for _, s := range steps {
		if err := Step(task, s.status); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(task.Status.GetStartedAt(), s.want) {
			t.Fatalf("after %s at %v: started_at %v, want %v", s.status.State, s.status.Timestamp, task.Status.GetStartedAt(), s.want)
		}
	}
	// A status that skips RUNNING (reported late, coalesced) starts nothing.
	quick := &Task{Id: "t2", DesiredState: TaskState_RUNNING, Status: &TaskStatus{State: TaskState_STARTING}}
	if err := Step(quick, &TaskStatus{State: TaskState_FAILED, Timestamp: at(50)}); err != nil || quick.Status.StartedAt != nil {
		t.Fatalf("failed before running: err %v, started_at %v", err, quick.Status.StartedAt)
	}
}

// TestStatesOrdered pins the numeric order the forward-only rule relies on.
func TestStatesOrdered(t *testing.T) {
	order := []TaskState{TaskState_NEW, TaskState_PENDING, TaskState_ASSIGNED, TaskState_ACCEPTED,
		TaskState_PREPARING, TaskState_READY, TaskState_STARTING, TaskState_RUNNING, TaskState_COMPLETE,
		TaskState_SHUTDOWN, TaskState_FAILED, TaskState_REJECTED, TaskState_REMOVE, TaskState_ORPHANED}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("%s (%d) not before %s (%d)", order[i-1], order[i-1], order[i], order[i])
		}
	}
	if TaskState_RUNNING.IsTerminal() || !TaskState_COMPLETE.IsTerminal() {
		t.Fatal("IsTerminal wrong")
	}
}
