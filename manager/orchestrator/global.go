package orchestrator

import (
	"fmt"
	"slices"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/scheduler"
)

// ReconcileGlobal decides what it takes for the global service svc to run one
// task on every eligible node. A node is eligible when it is READY, ACTIVE
// and matches the service's constraints; new tasks carry their node ID (the
// scheduler only checks them). Per node:
//   - no task and eligible: create one;
//   - drained, no longer matching the constraints, or removed from the
//     store: its task is shut down and not replaced;
//   - paused, not ready, or DOWN: the task is left alone and none is made
//     (a DOWN node's tasks become ORPHANED after a while, see OrphanTasks);
//   - a task that ended is replaced on the same node as the restart policy
//     says (only while the node is eligible);
//   - a task from an older template is replaced as the update config says
//     (update.go), at most spec.update.parallelism nodes at a time.
func ReconcileGlobal(svc *api.Service, nodes []*api.Node, tasks []*api.Task, now time.Time, ids IDSource) (Result, error) {
	if err := checkArgs(svc, ids); err != nil {
		return Result{}, err
	}
	if svc.GetSpec().GetGlobal() == nil {
		return Result{}, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("orchestrator: service %s is not global", svc.GetId()))
	}
	constraints, err := scheduler.ParseConstraints(svc.GetSpec().GetTask().GetPlacement().GetConstraints())
	if err != nil {
		return Result{}, fmt.Errorf("orchestrator: service %s: %w", svc.GetId(), err)
	}
	matches := func(n *api.Node) bool {
		for _, c := range constraints {
			if !c.Match(n) {
				return false
			}
		}
		return true
	}
	b := newBuilder(now, ids)
	byNode := nodeIndex(nodes)
	groups := nodeGroups(svc.GetId(), tasks)
	for _, n := range nodes {
		if n != nil && n.GetId() != "" && groups[n.GetId()] == nil {
			groups[n.GetId()] = &group{node: n.GetId()}
		}
	}
	ids2 := make([]string, 0, len(groups))
	for id := range groups {
		ids2 = append(ids2, id)
	}
	slices.Sort(ids2)

	all := make([]*group, 0, len(ids2))
	for _, id := range ids2 {
		all = append(all, groups[id])
	}
	ro := newRollout(svc, all)
	total := 0
	for _, g := range all {
		if g.current != nil {
			total++
		}
	}
	if b.failureAction(svc, ro, total) {
		return b.result(), nil
	}
	var outdated []*group
	busy, holding := 0, false
	for _, id := range ids2 {
		g := groups[id]
		n := byNode[id]
		if g.current != nil {
			g.kept = keptForStartFirst(svc, ro, g, byNode)
			b.shutdownSuperseded(svc, g)
			b.revertToKept(svc, g)
		}
		cur := g.current
		takesNew := nodeTakesNew(n) && matches(n)
		switch {
		case id == "":
			// A global task without a node cannot be placed: drop it.
			b.removeSlot(svc, g, byNode, "global task without a node")
		case n == nil || nodeDrained(n) || !matches(n):
			if cur != nil {
				why := "node drained"
				if n == nil {
					why = "node removed"
				} else if !nodeDrained(n) {
					why = "node no longer matches constraints"
				}
				if b.setDesired(cur, api.TaskState_SHUTDOWN, why) {
					b.logf(0, id, "%s: shut down %s (%s)", g.where(svc), cur.GetId(), why)
				}
			}
		case cur == nil:
			if takesNew && g.allStopped(byNode) {
				b.replace(svc, g, nil, 0, "node eligible")
				if len(g.tasks) > 0 {
					busy++ // a refill after a stop-first replacement
					holding = true
				}
			}
		case isTerminal(cur):
			b.restart(svc, g, byNode, takesNew)
		case nodeLost(n):
			// Nowhere else to go: wait for the node or for orphaning.
		case Dirty(svc, cur):
			if takesNew {
				outdated = append(outdated, g)
			}
		case cur.GetDesiredState() == api.TaskState_READY:
			b.releaseHeld(svc, g, byNode)
		}
		busy1, hold := b.progress(svc, ro, g, byNode)
		if vacating := cur == nil && !g.allStopped(byNode); vacating {
			busy1, hold = true, true
		}
		if busy1 {
			busy++
		}
		holding = holding || hold
	}
	b.rollout(svc, ro, outdated, busy, holding, byNode)
	return b.result(), nil
}

// nodeGroups groups the tasks of service id by node.
func nodeGroups(id string, tasks []*api.Task) map[string]*group {
	byNode := map[string][]*api.Task{}
	for _, t := range tasks {
		if t != nil && t.GetServiceId() == id {
			byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], t)
		}
	}
	out := make(map[string]*group, len(byNode))
	for node, ts := range byNode {
		out[node] = newGroup(0, node, ts)
	}
	return out
}
