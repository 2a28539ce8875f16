package orchestrator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// world is a small simulated cluster around the pure functions: a scheduler
// that places pending tasks, workers that move their tasks toward the
// desired state, and the reaper. It stands in for the loop, the scheduler
// and the agents, none of which may run in a unit test of decision code.
type world struct {
	t     *testing.T
	rng   *rand.Rand
	now   time.Time
	svc   *api.Service
	nodes []*api.Node
	tasks []*api.Task
	ids   *seq
	log   []string // what happened, for failure messages and transcripts
}

func (w *world) node(id string) *api.Node {
	for _, n := range w.nodes {
		if n.Id == id {
			return n
		}
	}
	return nil
}

func (w *world) reconcile() Result {
	w.t.Helper()
	var r Result
	var err error
	if w.svc.Spec.GetGlobal() != nil {
		r, err = ReconcileGlobal(w.svc, w.nodes, w.tasks, w.now, w.ids)
	} else {
		r, err = ReconcileReplicated(w.svc, w.nodes, w.tasks, w.now, w.ids)
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// orchestrate reconciles, applies the result and checks the invariants.
func (w *world) orchestrate() Result {
	w.t.Helper()
	r := w.reconcile()
	w.tasks = apply(w.t, w.tasks, r)
	w.applyService(r)
	w.log = append(w.log, r.Events...)
	w.checkInvariants()
	return r
}

// applyService does what the loop does with a Result's service changes:
// writes the update status, or rolls the service back as the control API's
// rollback does.
func (w *world) applyService(r Result) {
	if r.UpdateStatus != nil {
		w.svc.UpdateStatus = r.UpdateStatus
	}
	if r.Rollback != "" {
		w.svc.Spec, w.svc.PreviousSpec = w.svc.PreviousSpec, w.svc.Spec
		w.svc.SpecVersion++
		w.svc.UpdateStatus = &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_STARTED, StartedAt: timestamppb.New(w.now), Message: r.Rollback}
		w.log = append(w.log, "rolled back: "+r.Rollback)
	}
}

// updateSpec changes the service as `service update` does: the spec before
// is kept for a rollback, and the update status is cleared.
func (w *world) updateSpec(change func(*api.ServiceSpec)) {
	w.svc.PreviousSpec = proto.Clone(w.svc.Spec).(*api.ServiceSpec)
	change(w.svc.Spec)
	w.svc.SpecVersion++
	w.svc.UpdateStatus = nil
}

// checkInvariants: never two tasks of one replica both wanted and not over,
// but for a start-first update's pair: the older one running, the newer
// one, made from another template, not running yet.
func (w *world) checkInvariants() {
	w.t.Helper()
	wanted := map[string][]*api.Task{}
	for _, t := range w.tasks {
		if t.ServiceId != w.svc.Id || t.DesiredState > api.TaskState_RUNNING || isTerminal(t) {
			continue
		}
		key := fmt.Sprint(t.Slot)
		if t.Slot == 0 {
			key = t.NodeId
		}
		wanted[key] = append(wanted[key], t)
	}
	for key, ts := range wanted {
		if len(ts) < 2 {
			continue
		}
		slices.SortFunc(ts, newestFirst)
		newer, older := ts[0], ts[1]
		pair := len(ts) == 2 && older.Status.GetState() == api.TaskState_RUNNING &&
			newer.Status.GetState() < api.TaskState_RUNNING && !sameTemplate(older, newer)
		if !pair {
			w.t.Fatalf("replica %s has %d wanted tasks (%s, %s)\nlog:\n%s", key, len(ts), newer.Id, older.Id, w.dump())
		}
	}
}

func (w *world) dump() string {
	s := ""
	for _, l := range w.log {
		s += "  " + l + "\n"
	}
	for _, t := range w.tasks {
		s += fmt.Sprintf("  task %s slot %d node %q state %s desired %s\n", t.Id, t.Slot, t.NodeId, t.Status.GetState(), t.DesiredState)
	}
	return s
}

func (w *world) setState(t *api.Task, s api.TaskState) {
	next := &api.TaskStatus{State: s, Timestamp: timestamppb.New(w.now)}
	if err := api.Step(t, next); err != nil {
		w.t.Fatalf("simulated step: %v", err)
	}
}

// run lets the scheduler and the workers act once, and the reaper delete.
// It reports whether anything changed.
func (w *world) run() bool {
	changed := false
	var ready []string
	for _, n := range w.nodes {
		if nodeTakesNew(n) {
			ready = append(ready, n.Id)
		}
	}
	for i, t := range w.tasks {
		t = cloneTask(t) // stored tasks are immutable, as in the store
		before := t.Status.GetState()
		switch {
		case t.NodeId == "" && t.DesiredState <= api.TaskState_RUNNING && len(ready) > 0:
			t.NodeId = ready[w.rng.IntN(len(ready))]
			w.setState(t, api.TaskState_ASSIGNED)
		case t.NodeId == "" || isTerminal(t) || w.node(t.NodeId) == nil || nodeLost(w.node(t.NodeId)):
		case t.DesiredState > api.TaskState_RUNNING:
			w.setState(t, api.TaskState_SHUTDOWN)
		case t.Status.GetState() < t.DesiredState:
			w.setState(t, t.DesiredState)
		}
		if t.Status.GetState() != before {
			w.tasks[i] = t
			changed = true
		}
	}
	reap := ReapHistory([]*api.Service{w.svc}, w.tasks, DefaultHistoryLimit)
	w.tasks = apply(w.t, w.tasks, reap)
	return changed || !reap.Empty()
}

// chaos makes one random change to the world.
func (w *world) chaos() {
	switch w.rng.IntN(8) {
	case 0, 1: // a running task fails or completes
		var running []int
		for i, t := range w.tasks {
			if t.Status.GetState() == api.TaskState_RUNNING {
				running = append(running, i)
			}
		}
		if len(running) > 0 {
			i := running[w.rng.IntN(len(running))]
			t := cloneTask(w.tasks[i])
			w.setState(t, []api.TaskState{api.TaskState_FAILED, api.TaskState_COMPLETE}[w.rng.IntN(2)])
			w.tasks[i] = t
			w.log = append(w.log, "chaos: "+t.Id+" "+t.Status.State.String())
		}
	case 2: // a node goes down or comes back
		n := w.nodes[w.rng.IntN(len(w.nodes))]
		n.Status.State = []api.NodeStatus_State{api.NodeStatus_DOWN, api.NodeStatus_READY}[w.rng.IntN(2)]
		w.log = append(w.log, "chaos: node "+n.Id+" "+n.Status.State.String())
	case 3: // availability changes
		n := w.nodes[w.rng.IntN(len(w.nodes))]
		n.Spec.Availability = api.NodeSpec_Availability(w.rng.IntN(3))
		w.log = append(w.log, "chaos: node "+n.Id+" "+n.Spec.Availability.String())
	case 4: // scale
		if r := w.svc.Spec.GetReplicated(); r != nil {
			r.Replicas = uint64(w.rng.IntN(7))
			w.log = append(w.log, fmt.Sprintf("chaos: scale to %d", r.Replicas))
		}
	case 5: // service update
		w.updateSpec(func(s *api.ServiceSpec) { s.Task.Container.Image = fmt.Sprintf("busybox:%d", w.rng.IntN(3)) })
		w.log = append(w.log, "chaos: image "+w.svc.Spec.Task.Container.Image)
	default: // time passes
	}
}

func randomWorld(t *testing.T, seed uint64) *world {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &world{t: t, rng: rng, now: t0, ids: &seq{prefix: "t"}}
	var svc *api.Service
	if rng.IntN(3) == 0 {
		svc = global()
	} else {
		svc = replicated(uint64(rng.IntN(7)))
	}
	svc.Spec.Task.Restart = &api.RestartPolicy{
		Condition:   api.RestartPolicy_Condition(rng.IntN(3)),
		MaxAttempts: uint64(rng.IntN(3)),
	}
	if rng.IntN(2) == 0 {
		svc.Spec.Update = randomUpdateConfig(rng)
		svc.Spec.Rollback = randomUpdateConfig(rng)
	}
	if rng.IntN(4) == 0 {
		svc.Spec.Task.Placement = &api.Placement{Constraints: []string{"node.labels.zone!=b"}}
	}
	w.svc = svc
	for i := range 1 + rng.IntN(5) {
		n := node(fmt.Sprintf("n%d", i+1))
		n.Status.State = []api.NodeStatus_State{api.NodeStatus_READY, api.NodeStatus_READY, api.NodeStatus_DOWN, api.NodeStatus_UNKNOWN}[rng.IntN(4)]
		n.Spec.Availability = api.NodeSpec_Availability(rng.IntN(3))
		if rng.IntN(3) == 0 {
			nodeLabel("zone", "b")(n)
		}
		w.nodes = append(w.nodes, n)
	}
	// Random tasks, including states the orchestrator must repair (two
	// wanted tasks in one slot, tasks on unknown nodes, old templates).
	states := []api.TaskState{api.TaskState_NEW, api.TaskState_PENDING, api.TaskState_ASSIGNED, api.TaskState_PREPARING,
		api.TaskState_READY, api.TaskState_RUNNING, api.TaskState_COMPLETE, api.TaskState_FAILED, api.TaskState_SHUTDOWN, api.TaskState_REJECTED}
	desired := []api.TaskState{api.TaskState_READY, api.TaskState_RUNNING, api.TaskState_RUNNING, api.TaskState_SHUTDOWN, api.TaskState_REMOVE}
	for i := range rng.IntN(12) {
		from := svc
		if rng.IntN(3) == 0 {
			from = replicated(0, image("busybox:old"))
		}
		k := tk{id: fmt.Sprintf("x%d", i), state: states[rng.IntN(len(states))], desired: desired[rng.IntN(len(desired))],
			age: time.Duration(rng.IntN(3600)) * time.Second}
		if k.state >= api.TaskState_ASSIGNED || rng.IntN(2) == 0 {
			k.node = fmt.Sprintf("n%d", 1+rng.IntN(6)) // n6 never exists
		}
		if svc.Spec.GetGlobal() == nil {
			k.slot = uint64(1 + rng.IntN(8))
		} else if k.node == "" {
			k.node = "n1"
		}
		if k.state == api.TaskState_RUNNING && k.desired == api.TaskState_READY {
			k.desired = api.TaskState_RUNNING
		}
		tt := k.of(from)
		tt.ServiceId = svc.Id
		w.tasks = append(w.tasks, tt)
	}
	return w
}

func randomUpdateConfig(rng *rand.Rand) *api.UpdateConfig {
	return &api.UpdateConfig{
		Parallelism:     uint64(rng.IntN(3)),
		Delay:           durationpb.New(time.Duration(rng.IntN(3)) * 2 * time.Second),
		Monitor:         durationpb.New(time.Duration(rng.IntN(3)) * 3 * time.Second),
		FailureAction:   api.UpdateConfig_FailureAction(rng.IntN(3)),
		MaxFailureRatio: []float32{0, 0.3, 1}[rng.IntN(3)],
		Order:           api.UpdateConfig_Order(rng.IntN(2)),
	}
}

// TestPropertyNoCreatesAfterApply: for any state, applying a Result and
// starting the tasks it created leaves nothing more to create, and no
// replica ever has two wanted tasks.
func TestPropertyNoCreatesAfterApply(t *testing.T) {
	for seed := range uint64(3000) {
		w := randomWorld(t, seed)
		r := w.orchestrate()
		for _, c := range r.Create {
			x := find(w.tasks, c.Id)
			if x.NodeId == "" {
				for _, n := range w.nodes {
					if nodeTakesNew(n) {
						x.NodeId = n.Id
						break
					}
				}
			}
			if x.NodeId != "" {
				w.setState(x, min(x.DesiredState, api.TaskState_RUNNING))
			}
		}
		r2 := w.reconcile()
		if len(r2.Create) > 0 {
			t.Fatalf("seed %d: second pass creates %s\nfirst: %s\nsecond events: %q\nstate:\n%s",
				seed, summary(r2), summary(r), r2.Events, w.dump())
		}
		// Same input, same output.
		w.ids = &seq{prefix: "t"}
		a, b := w.reconcile(), func() Result { w.ids = &seq{prefix: "t"}; return w.reconcile() }()
		if summary(a) != summary(b) || !a.NextEvaluation.Equal(b.NextEvaluation) {
			t.Fatalf("seed %d: not deterministic: %s vs %s", seed, summary(a), summary(b))
		}
	}
}

// TestPropertyConvergence: through random failures, node losses, drains,
// scaling and updates, the invariants hold after every pass; once the chaos
// stops, the cluster converges: nothing more to do, the right number of
// replicas, all made from the current template.
func TestPropertyConvergence(t *testing.T) {
	seeds := uint64(400)
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		w := randomWorld(t, seed)
		for range 30 {
			w.orchestrate()
			w.run()
			w.chaos()
			w.now = w.now.Add(2 * time.Second)
		}
		// Quiet: some nodes come back, and n1 takes any task, so that
		// everything can settle (a rolling update whose replacements cannot
		// be placed stalls by design).
		for _, n := range w.nodes {
			if w.rng.IntN(2) == 0 {
				n.Status.State = api.NodeStatus_READY
			}
		}
		n1 := w.nodes[0]
		n1.Status.State, n1.Spec.Availability, n1.Spec.Annotations.Labels = api.NodeStatus_READY, api.NodeSpec_ACTIVE, nil
		// A paused update waits for its user, who resumes it with
		// `service update`, which clears the status.
		if st := w.svc.GetUpdateStatus().GetState(); st == api.UpdateStatus_PAUSED || st == api.UpdateStatus_ROLLBACK_PAUSED {
			w.svc.UpdateStatus = nil
		}
		converged := false
		for range 100 {
			r := w.orchestrate()
			changed := w.run()
			if r.Empty() && r.NextEvaluation.IsZero() && !changed {
				converged = true
				break
			}
			w.now = w.now.Add(3 * time.Second)
		}
		if !converged {
			t.Fatalf("seed %d: no convergence in 100 passes\n%s", seed, w.dump())
		}
		w.checkConverged(seed)
	}
}

func (w *world) checkConverged(seed uint64) {
	w.t.Helper()
	var current []*api.Task
	groups := slotGroups(w.svc.Id, w.tasks)
	if w.svc.Spec.GetGlobal() != nil {
		groups = nil
		for _, g := range nodeGroups(w.svc.Id, w.tasks) {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		if g.current != nil {
			current = append(current, g.current)
		}
	}
	fail := func(format string, args ...any) {
		w.t.Fatalf("seed %d: %s\n%s", seed, fmt.Sprintf(format, args...), w.dump())
	}
	for _, c := range current {
		// A global task on a node taking no new tasks (paused, down) waits
		// for the node: nothing can replace it meanwhile.
		if n := w.node(c.NodeId); w.svc.Spec.GetGlobal() != nil && !nodeTakesNew(n) {
			continue
		}
		if Dirty(w.svc, c) {
			fail("current task %s has an old template", c.Id)
		}
	}
	if rep := w.svc.Spec.GetReplicated(); rep != nil {
		if len(current) != int(rep.Replicas) {
			fail("%d replicas, want %d", len(current), rep.Replicas)
		}
		return
	}
	// Global: one current task per eligible node, none elsewhere.
	cs, _ := constraintsOf(w.svc)
	for _, n := range w.nodes {
		want := nodeTakesNew(n) && cs(n)
		has := slices.ContainsFunc(current, func(t *api.Task) bool { return t.NodeId == n.Id })
		if want && !has {
			fail("eligible node %s has no task", n.Id)
		}
		if has && (nodeDrained(n) || !cs(n)) {
			fail("node %s (drained or not matching) keeps a task", n.Id)
		}
	}
}

func constraintsOf(svc *api.Service) (func(*api.Node) bool, error) {
	t := &api.Task{Spec: svc.Spec.Task}
	return func(n *api.Node) bool { return constraintsMatch(t, n) }, nil
}
