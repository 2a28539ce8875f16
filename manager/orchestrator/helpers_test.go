package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// seq is a counter IDSource: n1, n2, ...
type seq struct {
	prefix string
	n      int
}

func (s *seq) NewID() string { s.n++; return fmt.Sprintf("%s%d", s.prefix, s.n) }

func ids() *seq { return &seq{prefix: "new"} }

type svcOpt func(*api.Service)

func replicated(n uint64, opts ...svcOpt) *api.Service {
	s := &api.Service{
		Id:          "svc",
		SpecVersion: 1,
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: "web"},
			Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:1"}},
			Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: n}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func global(opts ...svcOpt) *api.Service {
	s := replicated(0, opts...)
	s.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	return s
}

func image(img string) svcOpt {
	return func(s *api.Service) { s.Spec.Task.Container.Image = img; s.SpecVersion++ }
}

func restartPolicy(c api.RestartPolicy_Condition, delay time.Duration, maxAttempts uint64, window time.Duration) svcOpt {
	return func(s *api.Service) {
		p := &api.RestartPolicy{Condition: c, Delay: durationpb.New(delay), MaxAttempts: maxAttempts}
		if window > 0 {
			p.Window = durationpb.New(window)
		}
		s.Spec.Task.Restart = p
	}
}

func parallelism(p uint64) svcOpt {
	return func(s *api.Service) { s.Spec.Update = &api.UpdateConfig{Parallelism: p} }
}

func constraint(c ...string) svcOpt {
	return func(s *api.Service) { s.Spec.Task.Placement = &api.Placement{Constraints: c} }
}

type nodeOpt func(*api.Node)

func node(id string, opts ...nodeOpt) *api.Node {
	n := &api.Node{
		Id:          id,
		Meta:        &api.Meta{UpdatedAt: timestamppb.New(t0.Add(-time.Hour))},
		Spec:        &api.NodeSpec{Annotations: &api.Annotations{Name: id}},
		Description: &api.NodeDescription{Hostname: id},
		Status:      &api.NodeStatus{State: api.NodeStatus_READY},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func down(n *api.Node)    { n.Status.State = api.NodeStatus_DOWN }
func drained(n *api.Node) { n.Spec.Availability = api.NodeSpec_DRAIN }
func paused(n *api.Node)  { n.Spec.Availability = api.NodeSpec_PAUSE }
func downSince(d time.Duration) nodeOpt {
	return func(n *api.Node) { down(n); n.Meta.UpdatedAt = timestamppb.New(t0.Add(-d)) }
}
func nodeLabel(k, v string) nodeOpt {
	return func(n *api.Node) {
		if n.Spec.Annotations.Labels == nil {
			n.Spec.Annotations.Labels = map[string]string{}
		}
		n.Spec.Annotations.Labels[k] = v
	}
}

// tk makes a task of svc, created age before t0, in the given state.
type tk struct {
	id      string
	slot    uint64
	node    string
	state   api.TaskState
	desired api.TaskState
	age     time.Duration // created t0-age
	ended   time.Duration // status timestamp t0-ended
}

func (k tk) of(svc *api.Service) *api.Task {
	desired := k.desired
	if desired == 0 {
		desired = api.TaskState_RUNNING
	}
	t := &api.Task{
		Id:           k.id,
		Meta:         &api.Meta{Version: 7, CreatedAt: timestamppb.New(t0.Add(-k.age))},
		ServiceId:    svc.Id,
		Slot:         k.slot,
		NodeId:       k.node,
		Spec:         proto.Clone(svc.Spec.Task).(*api.TaskSpec),
		SpecVersion:  svc.SpecVersion,
		DesiredState: desired,
		Status:       &api.TaskStatus{State: k.state, Timestamp: timestamppb.New(t0.Add(-k.ended))},
	}
	return t
}

func tasksOf(svc *api.Service, ks ...tk) []*api.Task {
	var out []*api.Task
	for _, k := range ks {
		out = append(out, k.of(svc))
	}
	return out
}

const (
	RUN   = api.TaskState_RUNNING
	READY = api.TaskState_READY
	PEND  = api.TaskState_PENDING
	PREP  = api.TaskState_PREPARING
	DONE  = api.TaskState_COMPLETE
	FAIL  = api.TaskState_FAILED
	SHUT  = api.TaskState_SHUTDOWN
	REM   = api.TaskState_REMOVE
)

// summary renders a Result compactly for table comparisons:
// "+slot/node:desired" for creates, "id>desired" for updates, "-id" deletes.
func summary(r Result) string {
	var parts []string
	for _, t := range r.Create {
		where := fmt.Sprint(t.Slot)
		if t.NodeId != "" {
			where += "/" + t.NodeId
		}
		parts = append(parts, fmt.Sprintf("+%s:%s", where, short(t.DesiredState)))
	}
	for _, u := range r.Update {
		if u.Task.Status.GetState() == api.TaskState_ORPHANED {
			parts = append(parts, u.Task.Id+">ORPHANED")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s>%s", u.Task.Id, short(u.Task.DesiredState)))
	}
	for _, id := range r.Delete {
		parts = append(parts, "-"+id)
	}
	return strings.Join(parts, " ")
}

func short(s api.TaskState) string {
	return map[api.TaskState]string{RUN: "RUN", READY: "READY", SHUT: "SHUT", REM: "REM"}[s]
}

// apply writes r into the task list as the loop would, checking what the
// store would check: updates name existing tasks, read at their version.
func apply(t *testing.T, tasks []*api.Task, r Result) []*api.Task {
	t.Helper()
	byID := map[string]int{}
	out := slices.Clone(tasks)
	for i, x := range out {
		byID[x.Id] = i
	}
	for _, u := range r.Update {
		i, ok := byID[u.Task.Id]
		if !ok {
			t.Fatalf("update of unknown task %s", u.Task.Id)
		}
		if u.Task.GetMeta().GetVersion() != out[i].GetMeta().GetVersion() {
			t.Fatalf("update of %s does not carry the version read", u.Task.Id)
		}
		if u.Task.DesiredState < out[i].DesiredState {
			t.Fatalf("update of %s moves desired state back: %s -> %s", u.Task.Id, out[i].DesiredState, u.Task.DesiredState)
		}
		out[i] = u.Task
	}
	for _, c := range r.Create {
		if _, dup := byID[c.Id]; dup {
			t.Fatalf("create of existing ID %s", c.Id)
		}
		byID[c.Id] = len(out)
		out = append(out, c)
	}
	del := map[string]bool{}
	for _, id := range r.Delete {
		if _, ok := byID[id]; !ok {
			t.Fatalf("delete of unknown task %s", id)
		}
		del[id] = true
	}
	return slices.DeleteFunc(out, func(x *api.Task) bool { return del[x.Id] })
}

// find returns the task with id.
func find(ts []*api.Task, id string) *api.Task {
	for _, t := range ts {
		if t.Id == id {
			return t
		}
	}
	return nil
}

// set changes a task's observed state (and optionally node) as a worker or
// the scheduler would, at time at.
func set(t *testing.T, ts []*api.Task, id string, state api.TaskState, at time.Time) {
	t.Helper()
	x := find(ts, id)
	if x == nil {
		t.Fatalf("no task %s", id)
	}
	x.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(at)}
}

func mustReplicated(t *testing.T, svc *api.Service, nodes []*api.Node, tasks []*api.Task, now time.Time, src IDSource) Result {
	t.Helper()
	r, err := ReconcileReplicated(svc, nodes, tasks, now, src)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func cloneNode(n *api.Node) *api.Node { return proto.Clone(n).(*api.Node) }

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
