package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/scheduler"
)

// ReconcileReplicated decides what it takes for the replicated service svc to
// have spec.replicated.replicas replicas, each running its current template.
// nodes are all nodes; tasks may be every task (others' are ignored). Nothing
// passed in is modified.
//
// The rules, in the order they apply to each slot (README.md says why):
//   - a slot's current task is its newest with desired state RUNNING or
//     earlier; any other such task still running is shut down;
//   - too many slots: slots are removed (tasks desired REMOVE, terminal ones
//     deleted), preferring slots being vacated, then unassigned tasks, then
//     the nodes with the most tasks of the service, tasks not running, and
//     the highest slot numbers;
//   - too few: vacant slots are refilled first, then the lowest free slot
//     numbers get new tasks;
//   - a current task that ended is replaced as its restart policy says, with
//     the restart delay held in the new task (desired READY until released);
//   - a task on a DOWN or removed node is replaced in its slot at once, with
//     no restart delay (the
//     old one is asked to shut down, which its node does when it returns);
//   - a task on a drained node, or on a node its constraints no longer
//     match, is shut down and replaced once it has stopped (stop-first);
//   - a task made from an older template is replaced as the update config
//     says (update.go): parallelism, delay, monitor, failure action and
//     ratio, stop-first or start-first; the service's update status tells
//     where the update stands.
func ReconcileReplicated(svc *api.Service, nodes []*api.Node, tasks []*api.Task, now time.Time, ids IDSource) (Result, error) {
	if err := checkArgs(svc, ids); err != nil {
		return Result{}, err
	}
	rep := svc.GetSpec().GetReplicated()
	if rep == nil {
		return Result{}, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("orchestrator: service %s is not replicated", svc.GetId()))
	}
	b := newBuilder(now, ids)
	byNode := nodeIndex(nodes)

	var liveG, vacatingG, vacantG []*group
	used := map[uint64]bool{} // slot numbers not free for a new replica
	groups := slotGroups(svc.GetId(), tasks)
	ro := newRollout(svc, groups)
	want := int(rep.GetReplicas())
	if b.failureAction(svc, ro, want) {
		return b.result(), nil
	}
	for _, g := range groups {
		if g.slot == 0 {
			b.removeSlot(svc, g, byNode, "not a replica slot")
			continue
		}
		if g.current != nil {
			g.kept = keptForStartFirst(svc, ro, g, byNode)
			b.shutdownSuperseded(svc, g)
			b.revertToKept(svc, g)
		}
		switch g.state(byNode) {
		case live:
			liveG = append(liveG, g)
		case vacating:
			vacatingG = append(vacatingG, g)
		case vacant:
			vacantG = append(vacantG, g)
		}
		if g.current != nil || !g.allStopped(byNode) {
			used[g.slot] = true
		}
	}

	if extra := len(liveG) + len(vacatingG) - want; extra > 0 {
		order := removalOrder(vacatingG, liveG)
		gone := make(map[*group]bool, extra)
		for _, g := range order[:extra] {
			b.removeSlot(svc, g, byNode, "scale down")
			gone[g] = true
		}
		liveG = slices.DeleteFunc(liveG, func(g *group) bool { return gone[g] })
		vacatingG = slices.DeleteFunc(vacatingG, func(g *group) bool { return gone[g] })
	}
	need := want - len(liveG) - len(vacatingG)
	// busy counts the replicas being replaced, which a rolling update's
	// parallelism must leave room for: slots still vacating, and vacant
	// slots refilled now (their new task does not run yet).
	busy := len(vacatingG)
	for _, g := range vacantG {
		if need > 0 {
			b.replace(svc, g, nil, 0, "after "+g.tasks[len(g.tasks)-1].GetId()+" stopped")
			used[g.slot] = true
			need--
			busy++
		} else {
			b.removeSlot(svc, g, byNode, "scale down")
		}
	}
	for n := uint64(1); need > 0; n++ {
		if !used[n] {
			b.replace(svc, &group{slot: n}, nil, 0, "scale up")
			need--
		}
	}

	b.tendReplicas(svc, ro, liveG, busy, byNode)
	return b.result(), nil
}

func checkArgs(svc *api.Service, ids IDSource) error {
	switch {
	case svc == nil || svc.GetId() == "":
		return api.Wrap(api.ErrInvalidArgument, fmt.Errorf("orchestrator: service without ID"))
	case svc.GetSpec() == nil:
		return api.Wrap(api.ErrInvalidArgument, fmt.Errorf("orchestrator: service %s has no spec", svc.GetId()))
	case ids == nil:
		return api.Wrap(api.ErrInvalidArgument, fmt.Errorf("orchestrator: no ID source"))
	}
	return nil
}

// slotGroups groups the tasks of service id by slot, sorted by slot.
func slotGroups(id string, tasks []*api.Task) []*group {
	bySlot := map[uint64][]*api.Task{}
	for _, t := range tasks {
		if t != nil && t.GetServiceId() == id {
			bySlot[t.GetSlot()] = append(bySlot[t.GetSlot()], t)
		}
	}
	out := make([]*group, 0, len(bySlot))
	for slot, ts := range bySlot {
		out = append(out, newGroup(slot, "", ts))
	}
	slices.SortFunc(out, func(a, b *group) int { return cmp.Compare(a.slot, b.slot) })
	return out
}

// removalOrder lists the slots a scale-down removes first. Slots being
// vacated go first (their task is stopping anyway), then slots whose task is
// not assigned yet (removing them costs nothing and unbalances no node).
// The rest follow Swarm: each slot gets the index of its copy on its node
// (running ones, then low slots, get the low indexes), and the highest
// indexes go first, so the most loaded nodes lose tasks before the others;
// ties go to tasks not running, then to the highest slot number.
func removalOrder(vacatingG, liveG []*group) []*group {
	running := func(g *group) bool { return g.current.GetStatus().GetState() == api.TaskState_RUNNING }
	keep := func(a, b *group) int { // the order of preference to keep, per node
		if ra, rb := running(a), running(b); ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.slot, b.slot)
	}
	byNode := map[string][]*group{}
	for _, g := range liveG {
		byNode[g.current.GetNodeId()] = append(byNode[g.current.GetNodeId()], g)
	}
	index := map[*group]int{}
	for node, gs := range byNode {
		if node == "" {
			continue
		}
		slices.SortFunc(gs, keep)
		for i, g := range gs {
			index[g] = i + 1
		}
	}
	unassigned := slices.Clone(byNode[""])
	slices.SortFunc(unassigned, func(a, b *group) int { return cmp.Compare(b.slot, a.slot) })
	assigned := slices.DeleteFunc(slices.Clone(liveG), func(g *group) bool { return g.current.GetNodeId() == "" })
	slices.SortFunc(assigned, func(a, b *group) int {
		return cmp.Or(cmp.Compare(index[b], index[a]), -keep(a, b))
	})
	out := slices.Clone(vacatingG)
	slices.SortFunc(out, func(a, b *group) int { return cmp.Compare(b.slot, a.slot) })
	out = append(out, unassigned...)
	return append(out, assigned...)
}

// removeSlot retires a replica: its tasks that are over (terminal, or never
// assigned) are deleted at once, the others are asked to shut down with
// desired REMOVE, which ReapHistory deletes once they are terminal.
func (b *builder) removeSlot(svc *api.Service, g *group, nodes map[string]*api.Node, why string) {
	did := false
	for _, t := range g.tasks {
		if t.GetDesiredState() >= api.TaskState_REMOVE {
			continue
		}
		did = true
		if isTerminal(t) || t.GetNodeId() == "" {
			b.delete(t.GetId())
		} else {
			b.setDesired(t, api.TaskState_REMOVE, why)
		}
	}
	if did {
		b.logf(g.slot, g.node, "%s: remove (%s)", g.where(svc), why)
	}
}

// tendReplicas applies the per-slot rules to the live slots that stay, then
// moves the rolling update on. busy counts slots already being replaced.
func (b *builder) tendReplicas(svc *api.Service, ro *rollout, liveG []*group, busy int, nodes map[string]*api.Node) {
	var outdated []*group
	holding := busy > 0
	for _, g := range liveG {
		cur := g.current
		node := nodes[cur.GetNodeId()]
		assigned := cur.GetNodeId() != ""
		switch {
		case isTerminal(cur):
			b.restart(svc, g, nodes, true)
		case assigned && nodeLost(node):
			why := "node down"
			if node == nil {
				why = "node removed"
			}
			// No restart delay: it keeps a crashing task from looping, and a
			// lost node is not the task's crash. Swarm waits the delay here
			// too, which is most of its 10.9 s to heal a lost worker.
			b.replace(svc, g, cur, 0, why)
		case assigned && nodeDrained(node):
			b.vacate(svc, g, nodes, "node drained")
		case assigned && !constraintsMatch(cur, node):
			b.vacate(svc, g, nodes, "node no longer matches constraints")
		case Dirty(svc, cur):
			outdated = append(outdated, g)
		case cur.GetDesiredState() == api.TaskState_READY:
			b.releaseHeld(svc, g, nodes)
		}
		busy1, hold := b.progress(svc, ro, g, nodes)
		if busy1 {
			busy++
		}
		holding = holding || hold
	}
	b.rollout(svc, ro, outdated, busy, holding, nodes)
}

// vacate shuts down g's current task; a later call refills the slot once the
// task has stopped (or at once if it already has).
func (b *builder) vacate(svc *api.Service, g *group, nodes map[string]*api.Node, why string) {
	cur := g.current
	b.setDesired(cur, api.TaskState_SHUTDOWN, why)
	if stopped(cur, nodes) {
		b.replace(svc, g, cur, 0, why)
		return
	}
	b.logf(g.slot, g.node, "%s: shut down %s (%s), replace when stopped", g.where(svc), cur.GetId(), why)
}

// updating reports whether g is mid-update: its current task has the new
// template but does not run yet, and an older template's task came before.
// Such slots count against the update's parallelism, so a replacement that
// never reaches RUNNING (a bad image) holds the update, as Swarm's default
// failure action (pause) would.
func updating(svc *api.Service, g *group) bool {
	cur := g.current
	if cur == nil || isTerminal(cur) || cur.GetStatus().GetState() >= api.TaskState_RUNNING || Dirty(svc, cur) {
		return false
	}
	for _, t := range g.tasks {
		if t != cur && t.GetDesiredState() < api.TaskState_REMOVE && !sameTemplate(t, cur) {
			return true
		}
	}
	return false
}

// constraintsMatch reports whether node n still satisfies t's placement
// constraints. A constraint that does not parse evicts nothing: the control
// API refuses those, and a bad one must not empty the cluster.
func constraintsMatch(t *api.Task, n *api.Node) bool {
	cs, err := scheduler.ParseConstraints(t.GetSpec().GetPlacement().GetConstraints())
	if err != nil || n == nil {
		return true
	}
	for _, c := range cs {
		if !c.Match(n) {
			return false
		}
	}
	return true
}
