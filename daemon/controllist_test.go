package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/moby/moby/api/types/swarm"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/controlapi"
	"github.com/shoal-project/shoal/raftstore"
)

// controlOver serves a Control API over store on a loopback gRPC server
// with gRPC's default message limits, and returns a client of it.
func controlOver(t *testing.T, store *raftstore.MemoryStore) api.ControlClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterControlServer(srv, controlapi.NewServer(store, nil, nil))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return api.NewControlClient(conn)
}

// TestListsOf100000Tasks: `service ps`, `node ps`, `service ls` and
// `node ls` over a store of 100,000 tasks (and 1,500 nodes) return them
// all through pages, where one message would be far over gRPC's 4 MiB.
func TestListsOf100000Tasks(t *testing.T) {
	const nTasks, nNodes, nServices = 100000, 1500, 2
	store := raftstore.NewMemoryStore(nil, nil)
	ctx := context.Background()
	mustUpdate := func(fn func(raftstore.WriteTx) error) {
		t.Helper()
		if err := store.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate(func(tx raftstore.WriteTx) error {
		for i := range nNodes {
			id := fmt.Sprintf("node%04d", i)
			if err := tx.Create(&api.Node{Id: id, Spec: &api.NodeSpec{Annotations: &api.Annotations{Name: id}},
				Description: &api.NodeDescription{Hostname: id}, Status: &api.NodeStatus{State: api.NodeStatus_READY}}); err != nil {
				return err
			}
		}
		for i := range nServices {
			if err := tx.Create(&api.Service{Id: fmt.Sprintf("svc%d", i), SpecVersion: 1, Spec: &api.ServiceSpec{
				Annotations: &api.Annotations{Name: fmt.Sprintf("web%d", i)},
				Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:1"}},
				Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: nTasks / nServices}},
			}}); err != nil {
				return err
			}
		}
		return nil
	})
	unpaged := 0
	for chunk := 0; chunk < nTasks; chunk += 5000 {
		mustUpdate(func(tx raftstore.WriteTx) error {
			for i := chunk; i < chunk+5000; i++ {
				task := &api.Task{
					Id: fmt.Sprintf("task%06d", i), ServiceId: fmt.Sprintf("svc%d", i%nServices), Slot: uint64(i/nServices + 1),
					NodeId: fmt.Sprintf("node%04d", i%nNodes), DesiredState: api.TaskState_RUNNING,
					Spec:   &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:1", Command: []string{"sleep", "infinity"}}},
					Status: &api.TaskStatus{State: api.TaskState_RUNNING, Message: "started"},
				}
				unpaged += proto.Size(task)
				if err := tx.Create(task); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if unpaged <= 4<<20 {
		t.Fatalf("the tasks are only %d bytes: the test needs more than one message's worth", unpaged)
	}
	t.Logf("100,000 tasks: %d MiB as one message", unpaged>>20)
	c := controlOver(t, store)

	// Every page is under the limit (else the call would fail) and says
	// where the next starts.
	first, err := c.ListTasks(ctx, &api.ListTasksRequest{})
	if err != nil {
		t.Fatalf("first page: %v", err)
	}
	if first.GetNextPageToken() == "" || len(first.GetTasks()) == 0 {
		t.Fatalf("first page of %d tasks has no next page token", len(first.GetTasks()))
	}

	d := &Daemon{}
	get := func(route func(http.ResponseWriter, *http.Request, api.ControlClient), path string, out any) {
		t.Helper()
		rec := httptest.NewRecorder()
		route(rec, httptest.NewRequest(http.MethodGet, path, nil), c)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	checkTasks := func(what string, tasks []swarm.Task, want int) {
		t.Helper()
		seen := map[string]bool{}
		for _, x := range tasks {
			seen[x.ID] = true
		}
		if len(tasks) != want || len(seen) != want {
			t.Fatalf("%s: %d tasks (%d distinct), want %d", what, len(tasks), len(seen), want)
		}
	}

	var all []swarm.Task
	get(d.taskList, "/tasks", &all)
	checkTasks("all tasks", all, nTasks)

	var ofService []swarm.Task
	get(d.taskList, "/tasks?filters="+url.QueryEscape(`{"service":{"svc1":true}}`), &ofService)
	checkTasks("service ps svc1", ofService, nTasks/nServices)

	var onNode []swarm.Task
	get(d.taskList, "/tasks?filters="+url.QueryEscape(`{"node":{"node0007":true}}`), &onNode)
	checkTasks("node ps node0007", onNode, nTasks/nNodes+1) // 100000 = 66*1500 + 1000

	var services []swarm.Service
	get(d.serviceList, "/services?status=true", &services)
	running := uint64(0)
	for _, s := range services {
		running += s.ServiceStatus.RunningTasks
	}
	if len(services) != nServices || running != nTasks {
		t.Fatalf("service ls: %d services, %d running tasks, want %d and %d", len(services), running, nServices, nTasks)
	}

	var nodes []swarm.Node
	get(d.nodeList, "/nodes", &nodes)
	if len(nodes) != nNodes {
		t.Fatalf("node ls: %d nodes, want %d", len(nodes), nNodes)
	}
}
