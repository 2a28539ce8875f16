package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

func task(id, node string, state, desired api.TaskState) *api.Task {
	return &api.Task{Id: id, NodeId: node, DesiredState: desired, Status: &api.TaskStatus{State: state}}
}

func TestDeadlines(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := newDeadlines()
	if _, ok := d.next(); ok {
		t.Fatal("next on empty tracker")
	}
	d.set("b", t0.Add(3*time.Second))
	d.set("a", t0.Add(2*time.Second))
	d.set("c", t0.Add(5*time.Second))
	if n, _ := d.next(); !n.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("next = %v", n)
	}
	d.set("a", t0.Add(6*time.Second)) // a heartbeat extends
	d.remove("c")
	for _, tc := range []struct {
		at   time.Duration
		want []string
	}{
		{time.Second, nil},
		{3 * time.Second, []string{"b"}}, // at the deadline counts as missed
		{4 * time.Second, nil},           // b is gone after expiring once
		{10 * time.Second, []string{"a"}},
	} {
		if got := d.expired(t0.Add(tc.at)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("expired(+%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if _, ok := d.next(); ok {
		t.Fatal("tracker not empty after all expired")
	}
}

func TestAssigned(t *testing.T) {
	const (
		NEW, ASSIGNED, RUNNING, COMPLETE, FAILED = api.TaskState_NEW, api.TaskState_ASSIGNED, api.TaskState_RUNNING, api.TaskState_COMPLETE, api.TaskState_FAILED
		SHUTDOWN, REMOVE, READY                  = api.TaskState_SHUTDOWN, api.TaskState_REMOVE, api.TaskState_READY
	)
	for _, tc := range []struct {
		name string
		t    *api.Task
		want bool
	}{
		{"assigned, to run", task("t", "n1", ASSIGNED, RUNNING), true},
		{"running", task("t", "n1", RUNNING, RUNNING), true},
		{"held at READY", task("t", "n1", ASSIGNED, READY), true},
		{"other node", task("t", "n2", RUNNING, RUNNING), false},
		{"not yet placed", task("t", "n1", NEW, RUNNING), false},
		{"failed, still desired running: agent keeps it until the orchestrator decides", task("t", "n1", FAILED, RUNNING), true},
		{"to be shut down, still running", task("t", "n1", RUNNING, SHUTDOWN), true},
		{"to be removed, still running", task("t", "n1", RUNNING, REMOVE), true},
		{"shut down and no longer wanted", task("t", "n1", SHUTDOWN, SHUTDOWN), false},
		{"complete, removed", task("t", "n1", COMPLETE, REMOVE), false},
		{"nil", nil, false},
	} {
		if got := assigned(tc.t, "n1"); got != tc.want {
			t.Errorf("%s: assigned = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestChangedForAgent(t *testing.T) {
	base := task("t", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING)
	base.Meta = &api.Meta{Version: 3}
	statusOnly := task("t", "n1", api.TaskState_STARTING, api.TaskState_RUNNING)
	statusOnly.Meta = &api.Meta{Version: 9}
	desired := task("t", "n1", api.TaskState_RUNNING, api.TaskState_SHUTDOWN)
	spec := task("t", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING)
	spec.SpecVersion = 2
	for _, tc := range []struct {
		name     string
		old, new *api.Task
		want     bool
	}{
		{"status and meta only", base, statusOnly, false},
		{"desired state", base, desired, true},
		{"spec version", base, spec, true},
		{"appeared", nil, base, true},
		{"both nil", nil, nil, false},
	} {
		if got := changedForAgent(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: changed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func changeStrings(cs []*api.AssignmentChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Action.String()+" "+c.Task.GetId()+" "+c.Task.GetDesiredState().String())
	}
	return out
}

func TestAssignmentSet(t *testing.T) {
	s := newAssignmentSet("n1")
	got := changeStrings(s.complete([]*api.Task{
		task("b", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING),
		task("a", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
		task("c", "n1", api.TaskState_NEW, api.TaskState_RUNNING), // not placed yet
		task("d", "n1", api.TaskState_FAILED, api.TaskState_SHUTDOWN),
	}))
	if want := []string{"UPDATE a RUNNING", "UPDATE b RUNNING"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("complete = %v, want %v", got, want)
	}
	steps := []struct {
		name string
		id   string
		t    *api.Task
		want string
	}{
		{"status report echo", "a", task("a", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING), ""},
		{"placed", "c", task("c", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING), "UPDATE c RUNNING"},
		{"asked to stop", "a", task("a", "n1", api.TaskState_RUNNING, api.TaskState_SHUTDOWN), "UPDATE a SHUTDOWN"},
		{"stopped", "a", task("a", "n1", api.TaskState_SHUTDOWN, api.TaskState_SHUTDOWN), "REMOVE a NEW"},
		{"stopped again", "a", task("a", "n1", api.TaskState_SHUTDOWN, api.TaskState_REMOVE), ""},
		{"moved to another node", "b", task("b", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING), "REMOVE b NEW"},
		{"deleted", "c", nil, "REMOVE c NEW"},
		{"deleted, never sent", "zz", nil, ""},
		{"other node's task", "e", task("e", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING), ""},
	}
	for _, st := range steps {
		var got string
		if c := s.observe(st.id, st.t); c != nil {
			got = changeStrings([]*api.AssignmentChange{c})[0]
		}
		if got != st.want {
			t.Errorf("%s: change %q, want %q", st.name, got, st.want)
		}
	}
	if len(s.sent) != 0 {
		t.Errorf("set still holds %d tasks", len(s.sent))
	}
	// observeBatch reads store events: REMOVE events carry only Old.
	old := task("x", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING)
	evs := []raftstore.Event{
		{Kind: raftstore.KindNode, Object: &api.Node{Id: "x"}},
		{Kind: raftstore.KindTask, Action: api.StoreAction_CREATE, Object: old},
		{Kind: raftstore.KindTask, Action: api.StoreAction_REMOVE, Old: old},
	}
	if got, want := changeStrings(s.observeBatch(evs)), []string{"UPDATE x RUNNING", "REMOVE x NEW"}; !reflect.DeepEqual(got, want) {
		t.Errorf("observeBatch = %v, want %v", got, want)
	}
}

func TestValidateUpdate(t *testing.T) {
	up := func(id string, s api.TaskState) *api.TaskStatusUpdate {
		return &api.TaskStatusUpdate{TaskId: id, Status: &api.TaskStatus{State: s}}
	}
	running := task("t", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING)
	for _, tc := range []struct {
		name string
		t    *api.Task
		u    *api.TaskStatusUpdate
		want updateVerdict
		err  error
	}{
		{"forward", task("t", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING), up("t", api.TaskState_ACCEPTED), accept, nil},
		{"skip ahead to failed", task("t", "n1", api.TaskState_PREPARING, api.TaskState_RUNNING), up("t", api.TaskState_FAILED), accept, nil},
		{"backward", running, up("t", api.TaskState_STARTING), ignore, nil},
		{"same, nothing new", running, up("t", api.TaskState_RUNNING), ignore, nil},
		{"same, with a message", running, &api.TaskStatusUpdate{TaskId: "t", Status: &api.TaskStatus{State: api.TaskState_RUNNING, Message: "up"}}, accept, nil},
		{"out of terminal", task("t", "n1", api.TaskState_COMPLETE, api.TaskState_RUNNING), up("t", api.TaskState_FAILED), ignore, nil},
		{"REMOVE observed", running, up("t", api.TaskState_REMOVE), ignore, nil},
		{"start while held", task("t", "n1", api.TaskState_READY, api.TaskState_READY), up("t", api.TaskState_RUNNING), ignore, nil},
		{"task gone", nil, up("t", api.TaskState_RUNNING), ignore, nil},
		{"other node's task", task("t", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING), up("t", api.TaskState_ACCEPTED), refuse, api.ErrFailedPrecondition},
		{"no status", running, &api.TaskStatusUpdate{TaskId: "t"}, refuse, api.ErrInvalidArgument},
		{"no task ID", running, &api.TaskStatusUpdate{Status: &api.TaskStatus{}}, refuse, api.ErrInvalidArgument},
	} {
		got, err := validateUpdate("n1", tc.t, tc.u)
		if got != tc.want || (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("%s: verdict %v err %v, want %v %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestManagersOf(t *testing.T) {
	got := managersOf([]*api.Node{
		{Id: "m1", ManagerStatus: &api.ManagerStatus{Addr: "198.18.0.1:2377"}},
		{Id: "w1"},
		{Id: "m2", ManagerStatus: &api.ManagerStatus{}}, // no address yet
	})
	if len(got) != 1 || got[0].NodeId != "m1" || got[0].Addr != "198.18.0.1:2377" || got[0].Weight != 1 {
		t.Fatalf("managersOf = %v", got)
	}
}

// TestWriteStatusesRechecks: an update validated earlier is stepped again
// against the task as it is at write time.
func TestWriteStatusesRechecks(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	ctx := context.Background()
	if err := s.Update(ctx, func(tx raftstore.WriteTx) error {
		for _, tk := range []*api.Task{
			task("moved-on", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING),
			task("reassigned", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
			task("ok", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
		} {
			if err := tx.Create(tk); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n, err := writeStatuses(ctx, s, []pendingUpdate{
		{nodeID: "n1", taskID: "moved-on", status: &api.TaskStatus{State: api.TaskState_STARTING}},
		{nodeID: "n1", taskID: "reassigned", status: &api.TaskStatus{State: api.TaskState_ACCEPTED}},
		{nodeID: "n1", taskID: "deleted", status: &api.TaskStatus{State: api.TaskState_ACCEPTED}},
		{nodeID: "n1", taskID: "ok", status: &api.TaskStatus{State: api.TaskState_ACCEPTED}},
	})
	if err != nil || n != 1 {
		t.Fatalf("writeStatuses = %d, %v; want 1, nil", n, err)
	}
	s.View(func(tx raftstore.ReadTx) {
		if st := tx.GetTask("moved-on").GetStatus().GetState(); st != api.TaskState_RUNNING {
			t.Errorf("moved-on went back to %v", st)
		}
		if st := tx.GetTask("ok").GetStatus().GetState(); st != api.TaskState_ACCEPTED {
			t.Errorf("ok is %v", st)
		}
	})
}

func TestMessagesSplit(t *testing.T) {
	var changes []*api.AssignmentChange
	for i := range 10 {
		changes = append(changes, &api.AssignmentChange{Task: &api.Task{Id: fmt.Sprintf("task-%02d", i)}})
	}
	one := proto.Size(changes[0])
	msgs := messages(api.AssignmentsMessage_COMPLETE, "", "7", changes, 4*one) // 4 changes a message
	var got []string
	n := 0
	for _, m := range msgs {
		got = append(got, fmt.Sprintf("%v %s->%s %d", m.Type, m.AppliesTo, m.ResultsIn, len(m.Changes)))
		n += len(m.Changes)
	}
	want := []string{"COMPLETE ->7.0 4", "INCREMENTAL 7.0->7.1 4", "INCREMENTAL 7.1->7 2"}
	if !reflect.DeepEqual(got, want) || n != 10 {
		t.Fatalf("messages = %v, want %v", got, want)
	}
	// An empty set is still one (empty) message.
	if msgs := messages(api.AssignmentsMessage_COMPLETE, "", "3", nil, 100); len(msgs) != 1 || msgs[0].ResultsIn != "3" {
		t.Fatalf("empty = %v", msgs)
	}
	// A change bigger than the limit goes alone.
	if runs := splitChanges(changes[:3], one/2); len(runs) != 3 {
		t.Fatalf("oversized changes in %d runs, want 3", len(runs))
	}
}

// stormStore changes task busy, between the reads and the commit of each
// of the next n transactions written through it: another writer of the
// leader (a service update) that keeps winning the race.
type stormStore struct {
	*raftstore.MemoryStore
	busy string
	n    int
}

func (s *stormStore) Update(ctx context.Context, fn func(raftstore.WriteTx) error) error {
	return s.MemoryStore.Update(ctx, func(tx raftstore.WriteTx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.n > 0 {
			s.n--
			return s.MemoryStore.Update(ctx, func(tx raftstore.WriteTx) error {
				tk := tx.GetTask(s.busy)
				tk.Annotations = &api.Annotations{Labels: map[string]string{"gen": fmt.Sprint(s.n)}}
				return tx.Update(tk)
			})
		}
		return nil
	})
}

// TestWriteStatusesUnderConflicts: while another writer keeps changing one
// task, a batch of statuses that includes that task's FAILED report still
// stores every status, that one included. Before this fix the batch was
// retried 3 times and then dropped whole, after the agent had been told it
// was stored (this test failed: "writeStatuses = 0, ... conflict").
func TestWriteStatusesUnderConflicts(t *testing.T) {
	s := &stormStore{MemoryStore: raftstore.NewMemoryStore(nil, nil), busy: "t100"}
	ctx := context.Background()
	var ups []pendingUpdate
	if err := s.MemoryStore.Update(ctx, func(tx raftstore.WriteTx) error {
		for i := range 200 {
			id := fmt.Sprintf("t%03d", i)
			if err := tx.Create(task(id, "n1", api.TaskState_RUNNING, api.TaskState_RUNNING)); err != nil {
				return err
			}
			ups = append(ups, pendingUpdate{nodeID: "n1", taskID: id, status: &api.TaskStatus{State: api.TaskState_FAILED, Err: "exit 1"}})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.n = 10
	n, err := writeStatuses(ctx, s, ups)
	if err != nil || n != len(ups) {
		t.Fatalf("writeStatuses = %d, %v; want %d, nil", n, err, len(ups))
	}
	s.View(func(tx raftstore.ReadTx) {
		for _, tk := range tx.TasksOnNode("n1") {
			if tk.GetStatus().GetState() != api.TaskState_FAILED {
				t.Errorf("task %s is %v, want FAILED", tk.GetId(), tk.GetStatus().GetState())
			}
		}
	})
}

// TestSlowNodeGraceAdapts: a node whose heartbeats arrive later and later
// (its machine is loaded) is never declared down while it keeps beating,
// though its gaps pass the fixed 3 s grace; a node that beats every period
// keeps the 3 s grace; the grace is capped at 10 periods. With the fixed
// grace of before, the node expired at the 3.5 s gap.
func TestSlowNodeGraceAdapts(t *testing.T) {
	const period, base, limit = time.Second, 3 * time.Second, 10 * time.Second
	t0 := time.Unix(1000, 0)
	d := newDeadlines()
	now := t0
	d.beat("slow", now, period, base, limit)
	d.beat("steady", now, period, base, limit)
	for i, gap := range []time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond, 3500 * time.Millisecond, 4500 * time.Millisecond, 9 * time.Second} {
		for s := time.Duration(0); s < gap; s += period {
			if got := d.expired(now.Add(s)); len(got) != 0 {
				t.Fatalf("gap %d (%v): %v expired %v after the last beat", i, gap, got, s)
			}
			if s > 0 && s < gap {
				d.beat("steady", now.Add(s), period, base, limit)
			}
		}
		now = now.Add(gap)
		if got := d.expired(now.Add(-time.Millisecond)); len(got) != 0 {
			t.Fatalf("gap %d (%v): %v expired before the beat", i, gap, got)
		}
		d.beat("slow", now, period, base, limit)
		d.beat("steady", now, period, base, limit)
	}
	if g := d.at["slow"].Sub(now); g != limit {
		t.Errorf("slow node's grace %v, want the cap %v", g, limit)
	}
	if g := d.at["steady"].Sub(now); g != base {
		t.Errorf("steady node's grace %v, want %v", g, base)
	}
	// The slow node dies: it is down by the cap, not later.
	if got := d.expired(now.Add(limit)); !reflect.DeepEqual(got, []string{"slow", "steady"}) {
		t.Errorf("expired after the cap = %v", got)
	}
}

// TestMassSilenceRationed: of 20 nodes silent at once, a round marks 2
// down and makes the rest due again a period later; one that beats
// meanwhile is saved.
func TestMassSilenceRationed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := newDeadlines()
	for i := range 20 {
		d.set(fmt.Sprintf("n%02d", i), t0)
	}
	now := t0.Add(time.Second)
	got := d.ration(d.expired(now), 2, now.Add(time.Second))
	if !reflect.DeepEqual(got, []string{"n00", "n01"}) {
		t.Fatalf("first round took %v", got)
	}
	d.beat("n05", now.Add(500*time.Millisecond), time.Second, 3*time.Second, 10*time.Second)
	next := d.ration(d.expired(now.Add(time.Second)), 20, now.Add(2*time.Second))
	if len(next) != 17 {
		t.Fatalf("second round took %d nodes (%v), want the 17 still silent", len(next), next)
	}
	for _, n := range next {
		if n == "n05" {
			t.Fatal("a node that beat was marked down")
		}
	}
}
