package worker

import (
	"errors"
	"testing"

	"github.com/shoal-project/shoal/api"
)

func TestNext(t *testing.T) {
	created := &ContainerState{ID: "c1", Status: StatusCreated}
	running := &ContainerState{ID: "c1", Status: StatusRunning, Pid: 42}
	exit0 := &ContainerState{ID: "c1", Status: StatusExited}
	exit3 := &ContainerState{ID: "c1", Status: StatusExited, ExitCode: 3}
	probing := &ContainerState{ID: "c1", Status: StatusRunning, Pid: 42, Health: HealthStarting}
	healthy := &ContainerState{ID: "c1", Status: StatusRunning, Pid: 42, Health: HealthHealthy}
	unhealthy := &ContainerState{ID: "c1", Status: StatusRunning, Pid: 42, Health: HealthUnhealthy}
	const (
		R  = api.TaskState_RUNNING
		SD = api.TaskState_SHUTDOWN
		RM = api.TaskState_REMOVE
	)
	none := api.TaskState(-1) // no status reported
	tests := []struct {
		name           string
		state, desired api.TaskState
		obs            observed
		act            action
		want           api.TaskState
		errMsg         string
	}{
		{"assigned accepts", api.TaskState_ASSIGNED, R, observed{}, actContinue, api.TaskState_ACCEPTED, ""},
		{"accepted waits for a start slot", api.TaskState_ACCEPTED, R, observed{}, actAdmit, none, ""},
		{"admitted prepares", api.TaskState_ACCEPTED, R, observed{admitted: true}, actContinue, api.TaskState_PREPARING, ""},
		{"preparing creates", api.TaskState_PREPARING, R, observed{}, actPrepare, none, ""},
		{"missing image rejects", api.TaskState_PREPARING, R, observed{err: errors.New("No such image: x:1")}, actWait, api.TaskState_REJECTED, "No such image: x:1"},
		{"created is ready", api.TaskState_PREPARING, R, observed{container: created}, actContinue, api.TaskState_READY, ""},
		{"ready held by desired READY", api.TaskState_READY, api.TaskState_READY, observed{container: created}, actWait, none, ""},
		{"ready starts", api.TaskState_READY, R, observed{container: created}, actContinue, api.TaskState_STARTING, ""},
		{"starting starts", api.TaskState_STARTING, R, observed{container: created}, actStart, none, ""},
		{"start failed", api.TaskState_STARTING, R, observed{container: created, err: errors.New("exec: no such file")}, actWait, api.TaskState_FAILED, "exec: no such file"},
		{"started runs", api.TaskState_STARTING, R, observed{container: running}, actContinue, R, ""},
		{"exited before running seen", api.TaskState_STARTING, R, observed{container: exit0}, actContinue, api.TaskState_COMPLETE, ""},
		{"running waits", R, R, observed{container: running}, actWait, none, ""},
		{"exit 0 completes", R, R, observed{container: exit0}, actContinue, api.TaskState_COMPLETE, ""},
		{"exit 3 fails", R, R, observed{container: exit3}, actContinue, api.TaskState_FAILED, "task: non-zero exit (3)"},
		{"container gone fails", R, R, observed{}, actWait, api.TaskState_FAILED, "container of the task no longer exists"},
		{"shutdown stops", R, SD, observed{container: running}, actStop, none, ""},
		{"stopped is shutdown, removed", R, SD, observed{container: exit0}, actRemove, SD, ""},
		{"shutdown before create", api.TaskState_ASSIGNED, SD, observed{}, actDone, SD, ""},
		{"remove desired stops", R, RM, observed{container: running}, actStop, none, ""},
		{"terminal keeps its container", api.TaskState_COMPLETE, R, observed{container: exit0}, actWait, none, ""},
		{"terminal removed when shut down", api.TaskState_FAILED, SD, observed{container: exit3}, actRemove, none, ""},
		{"terminal without container done", SD, SD, observed{}, actDone, none, ""},
		{"terminal but running (adopted) stops", api.TaskState_COMPLETE, R, observed{container: running}, actStop, none, ""},
		{"adopt running after restart", R, R, observed{container: running}, actWait, none, ""},
		{"health starting holds STARTING", api.TaskState_STARTING, R, observed{container: probing}, actWait, none, ""},
		{"healthy runs", api.TaskState_STARTING, R, observed{container: healthy}, actContinue, R, ""},
		{"unhealthy at start fails", api.TaskState_STARTING, R, observed{container: unhealthy}, actContinue, api.TaskState_FAILED, "unhealthy container"},
		{"healthy running waits", R, R, observed{container: healthy}, actWait, none, ""},
		{"unhealthy running fails", R, R, observed{container: unhealthy}, actContinue, api.TaskState_FAILED, "unhealthy container"},
		{"failed unhealthy is stopped", api.TaskState_FAILED, R, observed{container: unhealthy}, actStop, none, ""},
		{"preparing finds a running container", api.TaskState_PREPARING, R, observed{container: running}, actContinue, api.TaskState_READY, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := &api.Task{Id: "t1", DesiredState: tc.desired, Status: &api.TaskStatus{State: tc.state}}
			act, st := next(task, tc.obs)
			if act != tc.act {
				t.Errorf("action = %v, want %v", act, tc.act)
			}
			if tc.want == none {
				if st != nil {
					t.Fatalf("status = %v, want none", st.GetState())
				}
				return
			}
			if st == nil {
				t.Fatalf("no status, want %v", tc.want)
			}
			if st.GetState() != tc.want || st.GetErr() != tc.errMsg {
				t.Errorf("status = %v %q, want %v %q", st.GetState(), st.GetErr(), tc.want, tc.errMsg)
			}
			// Every proposed status must be one api.Step accepts.
			if err := api.Step(task, st); err != nil {
				t.Errorf("Step refuses the proposed status: %v", err)
			}
		})
	}
}

// TestNextDrivesToRunning walks a task from ASSIGNED to RUNNING as the loop
// would, checking it never proposes a step api.Step refuses.
func TestNextDrivesToRunning(t *testing.T) {
	task := &api.Task{Id: "t1", DesiredState: api.TaskState_RUNNING, Status: &api.TaskStatus{State: api.TaskState_ASSIGNED}}
	var obs observed
	var seen []api.TaskState
	for i := 0; i < 20 && task.GetStatus().GetState() != api.TaskState_RUNNING; i++ {
		act, st := next(task, obs)
		if st != nil {
			if err := api.Step(task, st); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, st.GetState())
		}
		switch act {
		case actAdmit:
			obs.admitted = true
		case actPrepare:
			obs.container = &ContainerState{ID: "c", Status: StatusCreated}
		case actStart:
			obs.container = &ContainerState{ID: "c", Status: StatusRunning}
		}
	}
	want := []api.TaskState{api.TaskState_ACCEPTED, api.TaskState_PREPARING, api.TaskState_READY, api.TaskState_STARTING, api.TaskState_RUNNING}
	if len(seen) != len(want) {
		t.Fatalf("states %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("states %v, want %v", seen, want)
		}
	}
}
