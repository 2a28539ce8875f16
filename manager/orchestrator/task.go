package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func cloneTask(t *api.Task) *api.Task { return proto.Clone(t).(*api.Task) }

// created is when t was made (zero if unknown). The store stamps it with the
// leader's clock, and it never changes afterwards, which is what makes it
// usable as the anchor of a restart delay.
func created(t *api.Task) time.Time {
	if ts := t.GetMeta().GetCreatedAt(); ts != nil {
		return ts.AsTime()
	}
	return time.Time{}
}

// newestFirst orders tasks by creation time, newest first; IDs break ties so
// the order never depends on input order.
func newestFirst(a, b *api.Task) int {
	return cmp.Or(created(b).Compare(created(a)), cmp.Compare(b.GetId(), a.GetId()))
}

func isTerminal(t *api.Task) bool { return t.GetStatus().GetState().IsTerminal() }

// nodeLost reports whether a task on n can no longer be reached: the node is
// gone from the store or the dispatcher marked it DOWN. Such a task cannot
// report that it stopped, so nothing waits for it.
func nodeLost(n *api.Node) bool {
	return n == nil || n.GetStatus().GetState() == api.NodeStatus_DOWN
}

// nodeTakesNew reports whether n accepts new tasks: ready and active.
func nodeTakesNew(n *api.Node) bool {
	return n != nil && n.GetStatus().GetState() == api.NodeStatus_READY &&
		n.GetSpec().GetAvailability() == api.NodeSpec_ACTIVE
}

func nodeDrained(n *api.Node) bool {
	return n != nil && n.GetSpec().GetAvailability() == api.NodeSpec_DRAIN
}

// stopped reports whether t no longer runs anything: it reached a terminal
// state, was never assigned (nothing was started), or its node is lost.
// Stop-first replacement waits for this.
func stopped(t *api.Task, nodes map[string]*api.Node) bool {
	if isTerminal(t) || t.GetNodeId() == "" {
		return true
	}
	return nodeLost(nodes[t.GetNodeId()])
}

func nodeIndex(nodes []*api.Node) map[string]*api.Node {
	m := make(map[string]*api.Node, len(nodes))
	for _, n := range nodes {
		if n != nil && n.GetId() != "" {
			m[n.GetId()] = n
		}
	}
	return m
}

// equalMsg compares two messages of one type treating nil as empty: a task
// made from a service with no endpoint spec must not look changed because one
// side holds nil and the other an empty message.
func equalMsg[M proto.Message](a, b M, empty func() M) bool {
	var zero M
	if any(a) == any(zero) || !a.ProtoReflect().IsValid() {
		a = empty()
	}
	if any(b) == any(zero) || !b.ProtoReflect().IsValid() {
		b = empty()
	}
	return proto.Equal(a, b)
}

// Dirty reports whether t was made from a different task template than the
// service's current one, so a rolling update must replace it. The template is
// compared, not spec_version: scaling changes the service spec (and its
// version) without touching the task template, and must not restart tasks.
// force_update is part of the template, so `service update --force` counts.
func Dirty(svc *api.Service, t *api.Task) bool {
	if !equalMsg(t.GetSpec(), svc.GetSpec().GetTask(), func() *api.TaskSpec { return &api.TaskSpec{} }) {
		return true
	}
	// Endpoint spec changes (published ports) change what the task exposes.
	return t.GetEndpoint() != nil &&
		!equalMsg(t.GetEndpoint().GetSpec(), svc.GetSpec().GetEndpoint(), func() *api.EndpointSpec { return &api.EndpointSpec{} })
}

// sameTemplate reports whether a and b were made from the same task template.
func sameTemplate(a, b *api.Task) bool {
	return equalMsg(a.GetSpec(), b.GetSpec(), func() *api.TaskSpec { return &api.TaskSpec{} })
}

// newTask makes a task of svc for slot (replicated) or node (global).
func (b *builder) newTask(svc *api.Service, slot uint64, nodeID string, desired api.TaskState) *api.Task {
	id := b.ids.NewID()
	ts := timestamppb.New(b.now)
	place := fmt.Sprint(slot)
	if nodeID != "" && slot == 0 {
		place = nodeID
	}
	t := &api.Task{
		Id:                 id,
		Meta:               &api.Meta{CreatedAt: ts, UpdatedAt: ts},
		Annotations:        &api.Annotations{Name: fmt.Sprintf("%s.%s.%s", serviceName(svc), place, id)},
		ServiceId:          svc.GetId(),
		Slot:               slot,
		NodeId:             nodeID,
		Spec:               proto.Clone(svc.GetSpec().GetTask()).(*api.TaskSpec),
		SpecVersion:        svc.GetSpecVersion(),
		ServiceAnnotations: proto.Clone(svc.GetSpec().GetAnnotations()).(*api.Annotations),
		DesiredState:       desired,
		Status:             &api.TaskStatus{Timestamp: ts, State: api.TaskState_NEW, Message: "created"},
	}
	if t.Spec == nil {
		t.Spec = &api.TaskSpec{}
	}
	if ep := svc.GetSpec().GetEndpoint(); ep != nil {
		t.Endpoint = &api.Endpoint{Spec: proto.Clone(ep).(*api.EndpointSpec)}
	}
	b.res.Create = append(b.res.Create, t)
	return t
}

func serviceName(svc *api.Service) string {
	if n := svc.GetSpec().GetAnnotations().GetName(); n != "" {
		return n
	}
	return svc.GetId()
}

// group is the tasks of one replica: one slot of a replicated service, or one
// node of a global service.
type group struct {
	slot uint64
	node string
	// tasks are oldest first.
	tasks []*api.Task
	// current is the newest task whose desired state is RUNNING or earlier:
	// the one attempt at this replica that is still wanted. nil when the
	// replica is being vacated (every task asked to stop) or was removed.
	current *api.Task
	// kept is the older task a start-first update keeps running until
	// current runs (keptForStartFirst); nil mostly.
	kept *api.Task
}

// where names the group in events.
func (g *group) where(svc *api.Service) string {
	if g.node != "" && g.slot == 0 {
		return serviceName(svc) + "@" + g.node
	}
	return fmt.Sprintf("%s.%d", serviceName(svc), g.slot)
}

func newGroup(slot uint64, node string, tasks []*api.Task) *group {
	g := &group{slot: slot, node: node, tasks: tasks}
	slices.SortFunc(g.tasks, func(a, b *api.Task) int { return newestFirst(b, a) })
	for i := len(g.tasks) - 1; i >= 0; i-- {
		if g.tasks[i].GetDesiredState() <= api.TaskState_RUNNING {
			g.current = g.tasks[i]
			break
		}
	}
	return g
}

// shutdownSuperseded asks every still-wanted task other than the current one
// to stop. There is normally none: a replacement is made in the same Result
// that stops its predecessor. This catches what slipped through (a race, a
// manager crash mid-way), so a replica never has two tasks desired running.
// Ended ones are marked too: else, once the current task is shut down, an
// older ended task would become current and be restarted. The one exception
// is g.kept, which a start-first update keeps until current runs.
func (b *builder) shutdownSuperseded(svc *api.Service, g *group) {
	for _, t := range g.tasks {
		if t != g.current && t != g.kept && t.GetDesiredState() <= api.TaskState_RUNNING {
			if b.setDesired(t, api.TaskState_SHUTDOWN, "superseded by "+g.current.GetId()) {
				b.logf(g.slot, g.node, "%s: shut down %s (superseded by %s)", g.where(svc), t.GetId(), g.current.GetId())
			}
		}
	}
}

// slotState is where a replica stands.
type slotState int

const (
	// live: the replica has a current task.
	live slotState = iota
	// vacating: its tasks were asked to shut down (to be replaced, not
	// removed) and one has not stopped yet; the replacement waits for it
	// (stop-first).
	vacating
	// vacant: like vacating, but everything stopped: refill now.
	vacant
	// removed: every task was asked to be removed (scale-down), or there is
	// none.
	removed
)

// state classifies g. A replica is being replaced exactly when it has a task
// desired SHUTDOWN: removeSlot moves every task of a removed replica on to
// REMOVE (or deletes it), so no SHUTDOWN task outlives its replica.
func (g *group) state(nodes map[string]*api.Node) slotState {
	switch {
	case g.current != nil:
		return live
	case !slices.ContainsFunc(g.tasks, func(t *api.Task) bool { return t.GetDesiredState() == api.TaskState_SHUTDOWN }):
		return removed
	case !g.allStopped(nodes):
		return vacating
	}
	return vacant
}

// allStopped reports whether no task of g still runs.
func (g *group) allStopped(nodes map[string]*api.Node) bool {
	for _, t := range g.tasks {
		if !stopped(t, nodes) {
			return false
		}
	}
	return true
}
