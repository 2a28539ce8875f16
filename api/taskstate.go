package api

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrInvalidTransition is matched (errors.Is) by every *TransitionError.
var ErrInvalidTransition = errors.New("invalid task state transition")

// TransitionError is Step's refusal to move a task's state.
type TransitionError struct {
	TaskID   string
	From, To TaskState
	// Reason says which rule refused the step.
	Reason string
}

func (e *TransitionError) Error() string {
	if e.TaskID == "" {
		return fmt.Sprintf("task state %s -> %s: %s", e.From, e.To, e.Reason)
	}
	return fmt.Sprintf("task %s: %s -> %s: %s", e.TaskID, e.From, e.To, e.Reason)
}

// Is makes a TransitionError match ErrInvalidTransition and the
// FailedPrecondition class, so it crosses gRPC with the right code.
func (e *TransitionError) Is(target error) bool {
	return target == ErrInvalidTransition || target == ErrFailedPrecondition
}

// IsTerminal reports whether s is a final state: the task will never run
// (again). A restart is a new task.
func (s TaskState) IsTerminal() bool { return s >= TaskState_COMPLETE }

// CheckTransition reports whether a task in state from, with desired state
// desired, may move to state to. The rules:
//   - states only move forward (skipping is fine: a task may fail while
//     PREPARING); reporting the same state again is allowed so that a status
//     can be refreshed (a new message, a container ID);
//   - a terminal state is final: COMPLETE never becomes FAILED;
//   - REMOVE is a desired state only, never an observed one;
//   - a task does not start (STARTING, RUNNING) while a manager wants it held
//     at an earlier state (desired READY for start-first updates); an unset
//     desired state (NEW) holds nothing back.
func CheckTransition(from, to, desired TaskState) error {
	fail := func(reason string) error {
		return &TransitionError{From: from, To: to, Reason: reason}
	}
	if _, ok := TaskState_name[int32(to)]; !ok {
		return fail("unknown state")
	}
	switch {
	case to == TaskState_REMOVE:
		return fail("REMOVE is a desired state, not an observed one")
	case to < from:
		return fail("task states only move forward")
	case to == from:
		return nil
	case from.IsTerminal():
		return fail("terminal state is final")
	case to > TaskState_READY && to <= TaskState_RUNNING && desired < to && desired != TaskState_NEW:
		return fail(fmt.Sprintf("desired state is %s", desired))
	}
	return nil
}

// Step moves t's status to next, the one way task states change. It refuses
// (with a *TransitionError, leaving t untouched) a step CheckTransition
// refuses. t.Status becomes a copy of next, so the caller may reuse next,
// except for started_at, which Step keeps itself: the timestamp of the
// first RUNNING status, carried over every later one (what next says is
// ignored, so an agent cannot move it).
func Step(t *Task, next *TaskStatus) error {
	if t == nil || next == nil {
		return &TransitionError{Reason: "nil task or status"}
	}
	from := t.GetStatus().GetState()
	if err := CheckTransition(from, next.GetState(), t.GetDesiredState()); err != nil {
		var te *TransitionError
		if errors.As(err, &te) {
			te.TaskID = t.GetId()
		}
		return err
	}
	started := t.GetStatus().GetStartedAt()
	if started == nil && next.GetState() == TaskState_RUNNING {
		started = next.GetTimestamp()
	}
	t.Status = proto.Clone(next).(*TaskStatus)
	t.Status.StartedAt = nil
	if started != nil {
		t.Status.StartedAt = proto.Clone(started).(*timestamppb.Timestamp)
	}
	return nil
}
