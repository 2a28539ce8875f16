package controlapi

import (
	"context"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

func getTask(tx raftstore.ReadTx, ref string) (*api.Task, error) {
	o, err := resolve(tx, raftstore.KindTask, "task", ref, specName)
	if err != nil {
		return nil, err
	}
	return o.(*api.Task), nil
}

// GetTask returns a task by ID, name or unique ID prefix.
func (s *Server) GetTask(ctx context.Context, req *api.GetTaskRequest) (*api.GetTaskResponse, error) {
	var t *api.Task
	var err error
	s.store.View(func(tx raftstore.ReadTx) { t, err = getTask(tx, req.GetTaskId()) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetTaskResponse{Task: t}, nil
}

// ListTasks returns a page of the tasks matching every filter, sorted by
// ID (see listPage). It scans the shared objects rather than the service
// and node indexes, which hand out copies: a page of a 100,000-task service
// would clone them all each time.
func (s *Server) ListTasks(ctx context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes()}
	services, nodes := set(f.GetServiceIds()), set(f.GetNodeIds())
	keep := func(t *api.Task) bool {
		switch {
		case services != nil && !services[t.GetServiceId()],
			nodes != nil && !nodes[t.GetNodeId()],
			len(f.GetDesiredStates()) > 0 && !in(t.GetDesiredState(), f.GetDesiredStates()),
			len(f.GetSlots()) > 0 && !in(t.GetSlot(), f.GetSlots()):
			return false
		}
		return flt.match(t.GetId(), []string{t.GetAnnotations().GetName()}, nil)
	}
	resp := &api.ListTasksResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		resp.Tasks, resp.NextPageToken = listPage(shared[*api.Task](tx, raftstore.KindTask), keep, req.GetPageToken(), req.GetPageSize())
	})
	return resp, nil
}

// set is ids as a set, nil when there are none (no filter).
func set(ids []string) map[string]bool {
	if len(ids) == 0 {
		return nil
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// RemoveTask deletes a task from the store, as swarmkit does. The
// orchestrator replaces it if its slot still needs one.
func (s *Server) RemoveTask(ctx context.Context, req *api.RemoveTaskRequest) (*api.RemoveTaskResponse, error) {
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		t, err := getTask(tx, req.GetTaskId())
		if err != nil {
			return err
		}
		return tx.Delete(raftstore.KindTask, t.GetId())
	})
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.RemoveTaskResponse{}, nil
}
