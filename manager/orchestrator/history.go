package orchestrator

import (
	"slices"

	"github.com/shoal-project/shoal/api"
)

// HistoryLimit is the number of tasks a replica keeps under cluster c's
// task_history_retention_limit: DefaultHistoryLimit when c is nil or the
// field is 0 (proto3 cannot tell "unset" from 0, and unset must mean Docker's
// 5), -1 (keep everything) when it is negative.
func HistoryLimit(c *api.Cluster) int {
	l := c.GetSpec().GetTaskHistoryRetentionLimit()
	switch {
	case l == 0:
		return DefaultHistoryLimit
	case l < 0:
		return -1
	}
	return int(l)
}

// ReapHistory decides which tasks are deleted. services are all services,
// tasks all tasks; limit is the most tasks a replica (a slot, or a global
// service's node) keeps, its current task included (HistoryLimit); a
// negative limit keeps every finished task. The rules:
//   - a task whose service is gone is deleted when it is over (terminal, or
//     never assigned) and otherwise asked to shut down with desired REMOVE;
//   - a task desired REMOVE, or desired SHUTDOWN but never assigned, is
//     deleted once it is over;
//   - beyond limit, a replica's oldest terminal tasks are deleted, except its
//     current task (the replica's last word, e.g. "Complete") and the tasks
//     its restart policy still counts (max_attempts, see ShouldRestart), so
//     trimming history never turns a bounded policy into an unbounded one.
func ReapHistory(services []*api.Service, tasks []*api.Task, limit int) Result {
	b := newBuilder(timeZero, nil)
	svcs := map[string]*api.Service{}
	for _, s := range services {
		if s != nil {
			svcs[s.GetId()] = s
		}
	}
	type key struct {
		svc  string
		slot uint64
		node string
	}
	groups := map[key][]*api.Task{}
	var keys []key
	for _, t := range tasks {
		if t == nil {
			continue
		}
		over := isTerminal(t) || t.GetNodeId() == ""
		svc := svcs[t.GetServiceId()]
		switch {
		case svc == nil && over:
			b.delete(t.GetId())
			continue
		case svc == nil:
			b.setDesired(t, api.TaskState_REMOVE, "service removed")
			continue
		case over && t.GetDesiredState() >= api.TaskState_REMOVE,
			t.GetNodeId() == "" && t.GetDesiredState() > api.TaskState_RUNNING && t.GetStatus().GetState() < api.TaskState_ASSIGNED:
			b.delete(t.GetId())
			continue
		}
		k := key{svc: t.GetServiceId(), slot: t.GetSlot()}
		if svc.GetSpec().GetGlobal() != nil {
			k = key{svc: t.GetServiceId(), node: t.GetNodeId()}
		}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], t)
	}
	if limit < 0 {
		return b.result()
	}
	for _, k := range keys {
		g := newGroup(k.slot, k.node, groups[k])
		extra := len(g.tasks) - limit
		if extra <= 0 {
			continue
		}
		var keep []*api.Task
		if m := g.current.GetSpec().GetRestart().GetMaxAttempts(); g.current != nil && m > 0 {
			// The count never needs more than max_attempts earlier
			// failures: past that no restart happens anyway.
			keep = slices.DeleteFunc(failures(g.current, g.tasks), func(t *api.Task) bool { return t == g.current })
			if m < uint64(len(keep)) {
				keep = keep[len(keep)-int(m):]
			}
		}
		for _, t := range g.tasks { // oldest first
			if extra == 0 {
				break
			}
			if t == g.current || !isTerminal(t) || slices.Contains(keep, t) {
				continue
			}
			b.delete(t.GetId())
			extra--
		}
	}
	return b.result()
}
