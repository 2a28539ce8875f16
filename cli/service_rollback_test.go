package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
)

// scriptedAPI is a progressAPI whose nth poll (ServiceInspect, then
// TaskList) answers steps[n], the last step repeating.
type scriptedAPI struct {
	svc   swarm.Service
	steps []scriptStep
	polls int
}

type scriptStep struct {
	status *swarm.UpdateStatus
	tasks  []swarm.Task
}

func (a *scriptedAPI) step() scriptStep { return a.steps[min(a.polls, len(a.steps))-1] }

func (a *scriptedAPI) ServiceInspect(context.Context, string, bool) (swarm.Service, []byte, error) {
	a.polls++
	svc := a.svc
	svc.UpdateStatus = a.step().status
	return svc, nil, nil
}

func (a *scriptedAPI) TaskList(context.Context, apiclient.Filters) ([]swarm.Task, error) {
	return a.step().tasks, nil
}

func (a *scriptedAPI) NodeList(context.Context, apiclient.Filters) ([]swarm.Node, error) {
	return nil, nil
}

// runWait runs waitOnService on steps for a two-replica service.
func runWait(steps []scriptStep, o waitOptions) (string, error) {
	api := &scriptedAPI{svc: replicatedService(2), steps: steps}
	o.poll, o.timeout = time.Millisecond, 5*time.Second
	var out bytes.Buffer
	err := waitOnService(context.Background(), api, "S", &out, o)
	return out.String(), err
}

func updateStatus(state swarm.UpdateState, msg string, started time.Time) *swarm.UpdateStatus {
	return &swarm.UpdateStatus{State: state, Message: msg, StartedAt: &started}
}

const rolledBackMsg = "update rolled back due to failure or early termination of task t9"

// rolledBackSteps: an update whose new task fails, the rollback, and the
// rolled-back tasks running again.
func rolledBackSteps() []scriptStep {
	R, P := swarm.TaskStateRunning, swarm.TaskStatePending
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	return []scriptStep{
		{updateStatus(swarm.UpdateStateUpdating, "update in progress", t0),
			[]swarm.Task{task("t9", 1, "n1", R, swarm.TaskStateStarting), task("b", 2, "n1", R, R)}},
		{updateStatus(swarm.UpdateStateRollbackStarted, rolledBackMsg, t0.Add(time.Second)),
			[]swarm.Task{task("c", 1, "n1", R, P), task("b", 2, "n1", R, R)}},
		{updateStatus(swarm.UpdateStateRollbackCompleted, "rollback completed", t0.Add(time.Second)),
			[]swarm.Task{task("c", 1, "n1", R, R), task("b", 2, "n1", R, R)}},
	}
}

// TestWaitRolledBack: an update that the manager rolls back fails `service
// update` once the rolled-back service converged; the same course is the
// success of a rollback the command asked for. Both show the rollback.
func TestWaitRolledBack(t *testing.T) {
	out, err := runWait(rolledBackSteps(), waitOptions{})
	if err == nil || err.Error() != "service rolled back: "+rolledBackMsg {
		t.Fatalf("update: %v", err)
	}
	for _, want := range []string{
		"overall progress: 1 out of 2 tasks\n",
		"rollback: " + rolledBackMsg + "\noverall progress: rolling back update: 1 out of 2 tasks\n",
		"overall progress: rolling back update: 2 out of 2 tasks\n",
		"verify: Service S converged\nrollback: rollback completed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("update output lacks %q:\n%s", want, out)
		}
	}
	rbOut, err := runWait(rolledBackSteps(), waitOptions{rollback: true})
	if err != nil || rbOut != out {
		t.Fatalf("rollback command: %v, output\n%s\nwant\n%s", err, rbOut, out)
	}
}

// TestWaitIgnoresEarlierRollback: a write that changed nothing leaves the
// status of an earlier rollback; it is not this update's.
func TestWaitIgnoresEarlierRollback(t *testing.T) {
	R := swarm.TaskStateRunning
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	old := updateStatus(swarm.UpdateStateRollbackCompleted, "rollback completed", t0)
	steps := []scriptStep{{old, []swarm.Task{task("a", 1, "n1", R, R), task("b", 2, "n1", R, R)}}}
	// The same instant read back in another zone is the same status.
	before := updateStatus(swarm.UpdateStateRollbackCompleted, "rollback completed", t0.In(time.FixedZone("X", 3600)))
	out, err := runWait(steps, waitOptions{before: before})
	if err != nil || strings.Contains(out, "rollback") {
		t.Fatalf("earlier rollback taken for this one: %v\n%s", err, out)
	}
	// Without what was read before, the status is taken as this update's.
	if _, err := runWait(steps, waitOptions{}); err == nil || err.Error() != "service rolled back: rollback completed" {
		t.Fatalf("fresh rollback: %v", err)
	}
}

// TestWaitRollbackFailures: failures of the rolled-back template from
// before the rollback are history; new ones still end the wait, naming the
// rollback first.
func TestWaitRollbackFailures(t *testing.T) {
	R, S, F := swarm.TaskStateRunning, swarm.TaskStateShutdown, swarm.TaskStateFailed
	started := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	failedAt := func(id string, at time.Time) swarm.Task {
		tk := task(id, 1, "n1", S, F)
		tk.Status.Err, tk.Status.Timestamp = "task: non-zero exit (1)", at
		return tk
	}
	status := updateStatus(swarm.UpdateStateRollbackCompleted, "rollback completed", started)
	var history []swarm.Task
	for _, id := range []string{"h1", "h2", "h3"} {
		history = append(history, failedAt(id, started.Add(-time.Hour)))
	}
	// Not converged at first: the verdict on failures is taken then.
	steps := []scriptStep{
		{status, append(history, task("a", 1, "n1", R, swarm.TaskStateStarting), task("b", 2, "n1", R, R))},
		{status, append(history, task("a", 1, "n1", R, R), task("b", 2, "n1", R, R))},
	}
	if _, err := runWait(steps, waitOptions{rollback: true}); err != nil {
		t.Fatalf("history counted: %v", err)
	}
	var fresh []swarm.Task
	for _, id := range []string{"f1", "f2", "f3"} {
		fresh = append(fresh, failedAt(id, started.Add(time.Second)))
	}
	steps = []scriptStep{{status, append(fresh, task("a", 1, "n1", R, swarm.TaskStateStarting), task("b", 2, "n1", R, R))}}
	_, err := runWait(steps, waitOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), "service rolled back: rollback completed; service web cannot converge: 1/2: 3 tasks failed") {
		t.Fatalf("failing rollback: %v", err)
	}
}

func TestWaitPaused(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for state, want := range map[swarm.UpdateState]string{
		swarm.UpdateStatePaused:         "service update paused: update paused due to failure or early termination of task x",
		swarm.UpdateStateRollbackPaused: "service rollback paused: update paused due to failure or early termination of task x",
	} {
		steps := []scriptStep{{updateStatus(state, "update paused due to failure or early termination of task x", t0), nil}}
		if _, err := runWait(steps, waitOptions{}); err == nil || err.Error() != want {
			t.Errorf("%s: %v", state, err)
		}
	}
}

// TestServiceRollbackCommand: `service rollback` sends the current spec at
// its version with rollback=previous, prints the name and the daemon's
// warnings, and succeeds once the rolled-back service converged.
func TestServiceRollbackCommand(t *testing.T) {
	old := verifyWindow
	verifyWindow = 0
	t.Cleanup(func() { verifyWindow = old })
	f := newClusterFake(t)
	one := uint64(1)
	svc := swarm.Service{ID: "webid", Meta: swarm.Meta{Version: swarm.Version{Index: 7}}, Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "web"},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:1.36"}},
	}}
	f.services["webid"] = svc
	var query string
	var body []byte
	setStatus := func(state swarm.UpdateState, msg string) {
		f.mu.Lock()
		s := f.services["webid"]
		s.UpdateStatus = updateStatus(state, msg, time.Now())
		f.services["webid"] = s
		f.mu.Unlock()
	}
	// More specific than the fake's own update route, so it wins.
	f.mux.HandleFunc("POST /services/webid/update", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		query = r.URL.RawQuery
		body, _ = io.ReadAll(r.Body)
		f.mu.Unlock()
		setStatus(swarm.UpdateStateRollbackStarted, "manually requested rollback")
		writeJSON(w, 200, swarm.ServiceUpdateResponse{Warnings: []string{"warning 1"}})
	})
	f.tasks = func(poll int) []swarm.Task {
		tk := swarm.Task{ID: "t1", ServiceID: "webid", Slot: 1, NodeID: "node1", DesiredState: swarm.TaskStateRunning,
			Status: swarm.TaskStatus{State: swarm.TaskStatePending}}
		if poll == 1 {
			setStatus(swarm.UpdateStateRollbackCompleted, "rollback completed")
		} else {
			tk.Status.State = swarm.TaskStateRunning
		}
		return []swarm.Task{tk}
	}

	r := runCLI(t, f.host, "", "service", "rollback", "web")
	want := "web\nrollback: manually requested rollback\noverall progress: rolling back update: 0 out of 1 tasks\n" +
		"1/1: pending   [================>                                  ]\n" +
		"overall progress: rolling back update: 1 out of 1 tasks\n1/1: running   " + full + "\n" +
		"verify: Service web converged\nrollback: rollback completed\n"
	if r.code != 0 || r.stdout != want || r.stderr != "warning 1\n" {
		t.Fatalf("code %d stderr %q stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
	if !strings.Contains(query, "rollback=previous") || !strings.Contains(query, "version=7") {
		t.Errorf("rollback query %q", query)
	}
	var sent swarm.ServiceSpec
	if err := json.Unmarshal(body, &sent); err != nil || sent.Name != "web" || sent.TaskTemplate.ContainerSpec.Image != "busybox:1.36" {
		t.Errorf("rollback body %s (%v)", body, err)
	}

	// `service update --rollback` is the same request; only the wait
	// flags go with it.
	query = ""
	r = runCLI(t, f.host, "", "service", "update", "--rollback", "-d", "-q", "--converge-timeout", "5s", "web")
	if r.code != 0 || r.stdout != "web\n" || !strings.Contains(query, "rollback=previous") {
		t.Fatalf("update --rollback: %+v query %q", r, query)
	}
	sent0 := len(f.requests())
	r = runCLI(t, f.host, "", "service", "update", "--rollback", "--replicas", "2", "--image", "busybox:1.37", "web")
	if r.code != 1 || r.stderr != "other flags may not be combined with --rollback: --image, --replicas\n" {
		t.Fatalf("update --rollback --replicas: %+v", r)
	}
	if got := f.requests()[sent0:]; len(got) != 0 {
		t.Errorf("refused --rollback still sent %q", got)
	}
}

// TestServiceUpdateRolledBack: the CLI's exit status and message when the
// manager rolls the update back.
func TestServiceUpdateRolledBack(t *testing.T) {
	old := verifyWindow
	verifyWindow = 0
	t.Cleanup(func() { verifyWindow = old })
	f := newClusterFake(t)
	one := uint64(1)
	f.services["webid"] = swarm.Service{ID: "webid", Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "web"},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest"}},
	}}
	f.tasks = func(poll int) []swarm.Task {
		f.mu.Lock()
		defer f.mu.Unlock()
		s := f.services["webid"]
		tk := swarm.Task{ID: "t1", ServiceID: "webid", Slot: 1, NodeID: "node1", DesiredState: swarm.TaskStateRunning,
			Status: swarm.TaskStatus{State: swarm.TaskStateStarting}}
		switch poll {
		case 1:
			s.UpdateStatus = updateStatus(swarm.UpdateStateRollbackStarted, rolledBackMsg, time.Now())
		case 2:
			s.UpdateStatus = updateStatus(swarm.UpdateStateRollbackCompleted, "rollback completed", time.Now())
		default:
			tk.Status.State = swarm.TaskStateRunning
		}
		f.services["webid"] = s
		return []swarm.Task{tk}
	}
	r := runCLI(t, f.host, "", "service", "update", "--args", "false", "web")
	if r.code != 1 || r.stderr != "service rolled back: "+rolledBackMsg+"\n" || !strings.Contains(r.stdout, "verify: Service web converged\n") {
		t.Fatalf("%+v", r)
	}
}

// TestWaitForTheManagersVerdict: tasks that run before the manager's
// monitor window ends do not end the wait; the update's completion does.
// The CLI's own verify window (0 here) would have ended it at once.
func TestWaitForTheManagersVerdict(t *testing.T) {
	R := swarm.TaskStateRunning
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	running := []swarm.Task{task("a", 1, "n1", R, R), task("b", 2, "n1", R, R)}
	var steps []scriptStep
	for range 20 {
		steps = append(steps, scriptStep{updateStatus(swarm.UpdateStateUpdating, "update in progress", t0), running})
	}
	steps = append(steps, scriptStep{updateStatus(swarm.UpdateStateCompleted, "update completed", t0), running})
	api := &scriptedAPI{svc: replicatedService(2), steps: steps}
	var out bytes.Buffer
	err := waitOnService(context.Background(), api, "S", &out, waitOptions{poll: time.Millisecond, timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if api.polls <= 20 {
		t.Fatalf("the wait ended after %d polls, while the update was still in progress\n%s", api.polls, out.String())
	}
	if !strings.Contains(out.String(), "verify: Service S converged") {
		t.Fatalf("output:\n%s", out.String())
	}
}
