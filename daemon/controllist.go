package daemon

import (
	"context"
	"fmt"

	"github.com/shoal-project/shoal/api"
)

// The Control API's List calls answer one page at a time (a list of
// 100,000 tasks would not fit in one gRPC message); these fetch every page.

// maxListPages bounds a listing, so that a manager that never ends the
// pages cannot keep a request going forever (100,000,000 objects at the
// default page size).
const maxListPages = 100000

// allPages calls fetch with each next page token until a page has none.
func allPages[T any](what string, fetch func(token string) ([]T, string, error)) ([]T, error) {
	var (
		out   []T
		token string
	)
	for range maxListPages {
		page, next, err := fetch(token)
		if err != nil {
			return nil, api.FromGRPC(err)
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		if next <= token {
			return nil, fmt.Errorf("list %s: page token went back from %q to %q", what, token, next)
		}
		token = next
	}
	return nil, fmt.Errorf("list %s: more than %d pages", what, maxListPages)
}

// listTasks returns every task matching f.
func listTasks(ctx context.Context, c api.ControlClient, f *api.ListTasksRequest_Filters) ([]*api.Task, error) {
	return allPages("tasks", func(token string) ([]*api.Task, string, error) {
		resp, err := c.ListTasks(ctx, &api.ListTasksRequest{Filters: f, PageToken: token})
		return resp.GetTasks(), resp.GetNextPageToken(), err
	})
}

// listServices returns every service matching f.
func listServices(ctx context.Context, c api.ControlClient, f *api.ListServicesRequest_Filters) ([]*api.Service, error) {
	return allPages("services", func(token string) ([]*api.Service, string, error) {
		resp, err := c.ListServices(ctx, &api.ListServicesRequest{Filters: f, PageToken: token})
		return resp.GetServices(), resp.GetNextPageToken(), err
	})
}

// listNodes returns every node matching f.
func listNodes(ctx context.Context, c api.ControlClient, f *api.ListNodesRequest_Filters) ([]*api.Node, error) {
	return allPages("nodes", func(token string) ([]*api.Node, string, error) {
		resp, err := c.ListNodes(ctx, &api.ListNodesRequest{Filters: f, PageToken: token})
		return resp.GetNodes(), resp.GetNextPageToken(), err
	})
}
