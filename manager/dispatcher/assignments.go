package dispatcher

import (
	"sort"
	"strconv"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// assigned reports whether t belongs in nodeID's assignment set, the tasks
// the node's agent must know about:
//   - the task is on the node and the scheduler has placed it (status
//     ASSIGNED or later: below that, a global task's networks may not be
//     allocated yet, and the agent cannot run it);
//   - and either a manager wants it to run (desired state <= RUNNING), or it
//     is still live on the node while a manager wants it stopped (desired
//     SHUTDOWN/REMOVE, status not yet terminal), so the agent learns of the
//     new desired state and stops it.
//
// A task that has ended and is no longer wanted leaves the set, and the agent
// receives a REMOVE for it (it may then delete the container).
func assigned(t *api.Task, nodeID string) bool {
	if t == nil || t.GetNodeId() != nodeID || t.GetStatus().GetState() < api.TaskState_ASSIGNED {
		return false
	}
	if t.GetDesiredState() <= api.TaskState_RUNNING {
		return true
	}
	return !t.GetStatus().GetState().IsTerminal()
}

// changedForAgent reports whether new differs from old in what the agent acts
// on. Status and meta are left out: the status is the agent's own report
// (echoing every status update back would double the traffic), and meta
// changes with every write.
func changedForAgent(old, new *api.Task) bool {
	if old == nil || new == nil {
		return old != new
	}
	a, b := proto.Clone(old).(*api.Task), proto.Clone(new).(*api.Task)
	a.Status, b.Status, a.Meta, b.Meta = nil, nil, nil, nil
	return !proto.Equal(a, b)
}

// assignmentSet is what the dispatcher last told one node's agent: the
// tasks (as sent) by ID. It turns store changes into assignment changes.
type assignmentSet struct {
	nodeID string
	sent   map[string]*api.Task
}

func newAssignmentSet(nodeID string) *assignmentSet {
	return &assignmentSet{nodeID: nodeID, sent: make(map[string]*api.Task)}
}

// complete resets the set to the assigned ones among tasks and returns them
// all as UPDATE changes, sorted by task ID: the body of a COMPLETE message.
func (s *assignmentSet) complete(tasks []*api.Task) []*api.AssignmentChange {
	s.sent = make(map[string]*api.Task)
	var out []*api.AssignmentChange
	for _, t := range tasks {
		if assigned(t, s.nodeID) {
			s.sent[t.GetId()] = t
			out = append(out, &api.AssignmentChange{Task: t, Action: api.AssignmentChange_UPDATE})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Task.GetId() < out[j].Task.GetId() })
	return out
}

// observe takes the new state of task id (nil when it was deleted) and
// returns the change to send, or nil if the agent needs to hear nothing.
func (s *assignmentSet) observe(id string, t *api.Task) *api.AssignmentChange {
	old, had := s.sent[id]
	if assigned(t, s.nodeID) {
		if had && !changedForAgent(old, t) {
			return nil
		}
		s.sent[id] = t
		return &api.AssignmentChange{Task: t, Action: api.AssignmentChange_UPDATE}
	}
	if !had {
		return nil
	}
	delete(s.sent, id)
	// A REMOVE carries only the ID: the agent already has the rest.
	return &api.AssignmentChange{Task: &api.Task{Id: id}, Action: api.AssignmentChange_REMOVE}
}

// observeBatch turns the task events of store batches into changes, in
// order. Several changes to one task in the batches each yield a change; the
// agent applies them in order, so the last wins.
func (s *assignmentSet) observeBatch(events []raftstore.Event) []*api.AssignmentChange {
	var out []*api.AssignmentChange
	for _, e := range events {
		if e.Kind != raftstore.KindTask {
			continue
		}
		var id string
		var t *api.Task
		if e.Object != nil {
			t, _ = e.Object.(*api.Task)
			id = t.GetId()
		} else if e.Old != nil {
			id = e.Old.GetId()
		}
		if id == "" {
			continue
		}
		if c := s.observe(id, t); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// versionString names a store version in applies_to/results_in.
func versionString(v uint64) string { return strconv.FormatUint(v, 10) }

// maxMessageBytes bounds one AssignmentsMessage, well under gRPC's default
// 4 MiB receive limit, so a node with thousands of tasks (or a big scale-up
// onto one node) does not make a message the agent refuses.
const maxMessageBytes = 1 << 20

// splitChanges cuts changes into runs of at most maxBytes each (a single
// larger change goes alone). It returns at least one run, possibly empty, so
// an empty COMPLETE set is still sent.
func splitChanges(changes []*api.AssignmentChange, maxBytes int) [][]*api.AssignmentChange {
	var out [][]*api.AssignmentChange
	var cur []*api.AssignmentChange
	size := 0
	for _, c := range changes {
		n := proto.Size(c)
		if len(cur) > 0 && size+n > maxBytes {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, c)
		size += n
	}
	return append(out, cur)
}

// messages turns changes into the messages that carry them: the first of
// type typ applying to appliesTo, the rest INCREMENTAL, chained by
// applies_to/results_in; the last results in resultsIn. An agent applies
// them in order; one that reconnects mid-chain gets a COMPLETE set anew.
func messages(typ api.AssignmentsMessage_Type, appliesTo, resultsIn string, changes []*api.AssignmentChange, maxBytes int) []*api.AssignmentsMessage {
	runs := splitChanges(changes, maxBytes)
	out := make([]*api.AssignmentsMessage, 0, len(runs))
	for i, run := range runs {
		m := &api.AssignmentsMessage{Type: typ, AppliesTo: appliesTo, ResultsIn: resultsIn, Changes: run}
		if i < len(runs)-1 {
			m.ResultsIn = resultsIn + "." + strconv.Itoa(i)
		}
		out = append(out, m)
		typ, appliesTo = api.AssignmentsMessage_INCREMENTAL, m.ResultsIn
	}
	return out
}
