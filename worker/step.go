package worker

import (
	"fmt"

	"github.com/shoal-project/shoal/api"
)

// action is what the task loop must do after one step.
type action int

const (
	// actWait: nothing to do until the task or the container changes.
	actWait action = iota
	// actContinue: step again at once (a status was reported).
	actContinue
	// actPrepare: check the image and create the container.
	actPrepare
	// actStart: start the created container.
	actStart
	// actStop: stop the running container within the grace period.
	actStop
	// actRemove: remove the container; the task needs nothing more.
	actRemove
	// actDone: the task needs nothing more and has no container.
	actDone
	// actAdmit: wait for a slot of the node's start window (admission.go)
	// before preparing; the task stays ACCEPTED meanwhile.
	actAdmit
)

var actionNames = [...]string{"wait", "continue", "prepare", "start", "stop", "remove", "done", "admit"}

func (a action) String() string { return actionNames[a] }

// observed is what the task loop knows of the task's container.
type observed struct {
	// container is nil when the task has none (yet, or any more).
	container *ContainerState
	// err is the failure of the last prepare/create or start.
	err error
	// admitted: the task holds (or held) a slot of the start window.
	admitted bool
}

// next is one step of a task: from the task (its desired state and its
// current status) and what the runtime shows, it decides what to do and
// which status to report (nil: none). It is pure: the task loop performs the
// action, steps t with api.Step and calls next again.
func next(t *api.Task, obs observed) (action, *api.TaskStatus) {
	state, desired := t.GetStatus().GetState(), t.GetDesiredState()
	c := obs.container
	status := func(s api.TaskState, msg, errMsg string) *api.TaskStatus {
		st := &api.TaskStatus{State: s, Message: msg, Err: errMsg}
		if c != nil {
			st.ContainerStatus = &api.ContainerStatus{ContainerId: c.ID, Pid: int32(c.Pid), ExitCode: int32(c.ExitCode)}
		}
		return st
	}
	running := c != nil && c.Status == StatusRunning

	if state.IsTerminal() {
		// A terminal task keeps its exited container (logs, inspect) until a
		// manager wants it shut down or removed.
		switch {
		case running:
			return actStop, nil
		case c != nil && desired >= api.TaskState_SHUTDOWN:
			return actRemove, nil
		case c == nil && desired >= api.TaskState_SHUTDOWN:
			return actDone, nil
		}
		return actWait, nil
	}

	if desired >= api.TaskState_SHUTDOWN {
		if running {
			return actStop, nil
		}
		st := status(api.TaskState_SHUTDOWN, "shutdown", "")
		if c == nil {
			return actDone, st
		}
		return actRemove, st
	}

	switch {
	case state < api.TaskState_ACCEPTED:
		return actContinue, status(api.TaskState_ACCEPTED, "accepted", "")

	case state < api.TaskState_PREPARING:
		if !obs.admitted {
			return actAdmit, nil
		}
		return actContinue, status(api.TaskState_PREPARING, "preparing", "")

	case state == api.TaskState_PREPARING:
		if obs.err != nil {
			return actWait, status(api.TaskState_REJECTED, "preparing", obs.err.Error())
		}
		if c == nil {
			return actPrepare, nil
		}
		return actContinue, status(api.TaskState_READY, "prepared", "")

	case c == nil:
		// Past PREPARING the container must exist: it was removed behind
		// the agent's back (or lost with the node's data).
		return actWait, status(api.TaskState_FAILED, "container gone", "container of the task no longer exists")

	case state == api.TaskState_READY:
		if desired < api.TaskState_RUNNING && desired != api.TaskState_NEW {
			return actWait, nil // held at READY (start-first update)
		}
		return actContinue, status(api.TaskState_STARTING, "starting", "")

	case state == api.TaskState_STARTING:
		switch {
		case obs.err != nil:
			return actWait, status(api.TaskState_FAILED, "starting", obs.err.Error())
		case c.Status == StatusCreated:
			return actStart, nil
		case running && c.Health == HealthStarting:
			return actWait, nil // running only once healthy, as Swarm's tasks
		case running && c.Health == HealthUnhealthy:
			return actContinue, status(api.TaskState_FAILED, "starting", errUnhealthy)
		case running:
			return actContinue, status(api.TaskState_RUNNING, "started", "")
		}
		return actContinue, exited(status, c)

	default: // RUNNING
		if running && c.Health == HealthUnhealthy {
			// Failed: the container is stopped (a terminal task's running
			// container is) and the orchestrator replaces the task.
			return actContinue, status(api.TaskState_FAILED, "unhealthy", errUnhealthy)
		}
		if running || c.Status == StatusCreated {
			return actWait, nil
		}
		return actContinue, exited(status, c)
	}
}

// errUnhealthy is the error of a task whose container turned unhealthy
// (Swarm's words).
const errUnhealthy = "unhealthy container"

// exited is the terminal status of a container that ended by itself.
func exited(status func(api.TaskState, string, string) *api.TaskStatus, c *ContainerState) *api.TaskStatus {
	if c.ExitCode == 0 && c.Error == "" {
		return status(api.TaskState_COMPLETE, "finished", "")
	}
	msg := fmt.Sprintf("task: non-zero exit (%d)", c.ExitCode)
	if c.Error != "" {
		msg = c.Error
	}
	return status(api.TaskState_FAILED, "failed", msg)
}
