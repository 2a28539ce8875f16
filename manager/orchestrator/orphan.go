package orchestrator

import (
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// timeZero stands in for "now" in decisions that do not depend on time.
var timeZero time.Time

// OrphanTasks gives up on the tasks of nodes that have been DOWN for period
// or longer (Swarm: 24 h, DefaultOrphanPeriod): their status becomes
// ORPHANED, a terminal state, so ReapHistory may delete them and the
// scheduler stops counting their resources. Tasks naming a node that is no
// longer in nodes are orphaned at once: nothing will ever report on them.
// nodes must be every node.
//
// The api has no "down since" field; a DOWN node's meta.updated_at stands in
// for it, since the dispatcher's write that marked it DOWN stamped it. A
// later write to the node (a label change) moves it on, which only delays
// orphaning.
func OrphanTasks(nodes []*api.Node, tasks []*api.Task, now time.Time, period time.Duration) Result {
	b := newBuilder(now, nil)
	byNode := nodeIndex(nodes)
	for _, t := range tasks {
		if t == nil || t.GetNodeId() == "" || isTerminal(t) {
			continue
		}
		n := byNode[t.GetNodeId()]
		why := "node removed"
		if n != nil {
			if n.GetStatus().GetState() != api.NodeStatus_DOWN {
				continue
			}
			since := n.GetMeta().GetUpdatedAt()
			if since == nil {
				continue
			}
			at := since.AsTime().Add(period)
			if now.Before(at) {
				b.wakeAt(at)
				continue
			}
			why = fmt.Sprintf("node down for more than %s", period)
		}
		next := &api.TaskStatus{Timestamp: timestamppb.New(now), State: api.TaskState_ORPHANED, Message: why}
		u := b.update(t, why)
		if err := api.Step(u, next); err != nil {
			delete(b.changed, t.GetId()) // cannot happen for a non-terminal task; never half-change it
			continue
		}
		b.logf(t.GetSlot(), t.GetNodeId(), "orphan %s (%s)", t.GetId(), why)
	}
	return b.result()
}
