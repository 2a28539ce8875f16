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

// ListTasks returns the tasks matching every filter, sorted by ID. Service
// IDs are looked up through the store's index rather than a scan of all tasks.
func (s *Server) ListTasks(ctx context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes()}
	keep := func(t *api.Task) bool {
		switch {
		case len(f.GetServiceIds()) > 0 && !in(t.GetServiceId(), f.GetServiceIds()),
			len(f.GetNodeIds()) > 0 && !in(t.GetNodeId(), f.GetNodeIds()),
			len(f.GetDesiredStates()) > 0 && !in(t.GetDesiredState(), f.GetDesiredStates()),
			len(f.GetSlots()) > 0 && !in(t.GetSlot(), f.GetSlots()):
			return false
		}
		return flt.match(t.GetId(), []string{t.GetAnnotations().GetName()}, nil)
	}
	resp := &api.ListTasksResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		var candidates []*api.Task
		switch {
		case len(f.GetServiceIds()) > 0:
			for _, id := range dedup(f.GetServiceIds()) {
				candidates = append(candidates, tx.TasksOfService(id)...)
			}
		case len(f.GetNodeIds()) > 0:
			for _, id := range dedup(f.GetNodeIds()) {
				candidates = append(candidates, tx.TasksOnNode(id)...)
			}
		default:
			candidates = tx.Tasks()
		}
		for _, t := range candidates {
			if keep(t) {
				resp.Tasks = append(resp.Tasks, t)
			}
		}
	})
	sortByID(resp.Tasks)
	return resp, nil
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
