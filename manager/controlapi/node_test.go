package controlapi

import (
	"context"
	"net"
	"testing"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// node describes a test node: "m+" is a reachable manager, "m-" an
// unreachable one, "w" a worker; down marks its status DOWN.
func node(id, kind string, down bool) *api.Node {
	n := &api.Node{
		Id:          id,
		Spec:        &api.NodeSpec{Annotations: &api.Annotations{Labels: map[string]string{"zone": id}}},
		Description: &api.NodeDescription{Hostname: "host-" + id},
		Status:      &api.NodeStatus{State: api.NodeStatus_READY},
	}
	if down {
		n.Status.State = api.NodeStatus_DOWN
	}
	if kind != "w" {
		n.Role, n.Spec.DesiredRole = api.NodeRole_MANAGER, api.NodeRole_MANAGER
		n.ManagerStatus = &api.ManagerStatus{Reachability: api.ManagerStatus_REACHABLE}
		if kind == "m-" {
			n.ManagerStatus.Reachability = api.ManagerStatus_UNREACHABLE
		}
	}
	return n
}

func TestDemoteAndRemoveKeepQuorum(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []*api.Node
		op     string // demote, remove, force
		target string
		class  error
		text   string
	}{
		{"demote last manager", []*api.Node{node("a", "m+", false), node("w", "w", false)}, "demote", "a",
			api.ErrFailedPrecondition, "cannot demote node host-a: it is the last manager"},
		{"demote one of three", []*api.Node{node("a", "m+", false), node("b", "m+", false), node("c", "m+", false)}, "demote", "c", nil, ""},
		{"demote one of three, one other down", []*api.Node{node("a", "m+", false), node("b", "m-", true), node("c", "m+", false)}, "demote", "c",
			api.ErrFailedPrecondition, "only 1 of the other 2 managers are reachable, and the cluster needs 2"},
		{"demote the unreachable one of three", []*api.Node{node("a", "m+", false), node("b", "m+", false), node("c", "m-", true)}, "demote", "c", nil, ""},
		{"demote one of two", []*api.Node{node("a", "m+", false), node("b", "m+", false)}, "demote", "b", nil, ""},
		{"demote one of two, other unreachable", []*api.Node{node("a", "m-", false), node("b", "m+", false)}, "demote", "b",
			api.ErrFailedPrecondition, "only 0 of the other 1 managers"},
		{"demote one of five, two down", []*api.Node{node("a", "m+", false), node("b", "m+", false), node("c", "m+", false), node("d", "m-", true), node("e", "m-", true)}, "demote", "a",
			api.ErrFailedPrecondition, "only 2 of the other 4 managers are reachable, and the cluster needs 3"},
		{"demote one of five, one down", []*api.Node{node("a", "m+", false), node("b", "m+", false), node("c", "m+", false), node("d", "m+", false), node("e", "m-", true)}, "demote", "a", nil, ""},
		{"remove manager without force", []*api.Node{node("a", "m+", false), node("b", "m+", true)}, "remove", "b",
			api.ErrFailedPrecondition, "node host-b is a manager: demote it first or use --force"},
		{"force remove down manager of three", []*api.Node{node("a", "m+", false), node("b", "m+", false), node("c", "m-", true)}, "force", "c", nil, ""},
		{"force remove manager losing quorum", []*api.Node{node("a", "m+", false), node("b", "m-", true), node("c", "m+", false)}, "force", "c",
			api.ErrFailedPrecondition, "cannot remove node host-c"},
		{"force remove last manager", []*api.Node{node("a", "m+", false), node("w", "w", false)}, "force", "host-a",
			api.ErrFailedPrecondition, "last manager"},
		{"remove worker that is up", []*api.Node{node("a", "m+", false), node("w", "w", false)}, "remove", "w",
			api.ErrFailedPrecondition, "node host-w is not down and can't be removed"},
		{"remove worker that is down", []*api.Node{node("a", "m+", false), node("w", "w", true)}, "remove", "w", nil, ""},
		{"force remove worker that is up", []*api.Node{node("a", "m+", false), node("w", "w", false)}, "force", "host-w", nil, ""},
		{"remove unknown", []*api.Node{node("a", "m+", false)}, "remove", "zz", api.ErrNotFound, "node zz not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, st := newTestServer(t)
			for _, n := range tt.nodes {
				seed(t, st, n)
			}
			var err error
			switch tt.op {
			case "demote":
				got, gerr := s.GetNode(ctx, &api.GetNodeRequest{NodeId: tt.target})
				if gerr != nil {
					t.Fatal(gerr)
				}
				spec := got.Node.Spec
				spec.DesiredRole = api.NodeRole_WORKER
				var resp *api.UpdateNodeResponse
				resp, err = s.updateNode(ctx, &api.UpdateNodeRequest{NodeId: tt.target, NodeVersion: got.Node.Meta.Version, Spec: spec})
				if err == nil && (resp.Node.Spec.DesiredRole != api.NodeRole_WORKER || resp.Node.Role != api.NodeRole_MANAGER) {
					t.Fatalf("demote should set only the desired role: %v", resp.Node)
				}
			default:
				_, err = s.removeNode(ctx, &api.RemoveNodeRequest{NodeId: tt.target, Force: tt.op == "force"})
			}
			wantErr(t, err, tt.class, tt.text)
			var left int
			st.View(func(tx raftstore.ReadTx) { left = len(tx.Nodes()) })
			if removed := tt.op != "demote" && err == nil; removed != (left == len(tt.nodes)-1) {
				t.Fatalf("%d of %d nodes left after %s (err %v)", left, len(tt.nodes), tt.op, err)
			}
		})
	}
}

func TestUpdateNode(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	seed(t, st, node("a", "m+", false), node("w1", "w", false), node("w2", "w", false))
	get := func(ref string) *api.Node {
		t.Helper()
		resp, err := s.GetNode(ctx, &api.GetNodeRequest{NodeId: ref})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Node
	}
	w1 := get("host-w1")
	spec := &api.NodeSpec{Availability: api.NodeSpec_DRAIN, Annotations: &api.Annotations{Labels: map[string]string{"ssd": "true"}}}
	resp, err := s.updateNode(ctx, &api.UpdateNodeRequest{NodeId: "w1", NodeVersion: w1.Meta.Version, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Node.Spec.Availability != api.NodeSpec_DRAIN || resp.Node.Spec.Annotations.Labels["ssd"] != "true" {
		t.Fatalf("after update: %v", resp.Node)
	}
	for _, tt := range []struct {
		req   *api.UpdateNodeRequest
		class error
		text  string
	}{
		{&api.UpdateNodeRequest{NodeId: "w1", NodeVersion: w1.Meta.Version, Spec: spec}, api.ErrConflict, "node host-w1: update out of sequence"},
		{&api.UpdateNodeRequest{NodeId: "w1", NodeVersion: resp.Node.Meta.Version, Spec: &api.NodeSpec{Availability: 9}}, api.ErrInvalidArgument, "unknown node availability 9"},
		{&api.UpdateNodeRequest{NodeId: "w1", NodeVersion: resp.Node.Meta.Version, Spec: &api.NodeSpec{DesiredRole: 4}}, api.ErrInvalidArgument, "unknown node role 4"},
		{&api.UpdateNodeRequest{NodeId: "w1", NodeVersion: resp.Node.Meta.Version}, api.ErrInvalidArgument, "node spec is required"},
		{&api.UpdateNodeRequest{NodeId: "host-w", Spec: spec}, api.ErrNotFound, "node host-w not found"},
		{&api.UpdateNodeRequest{NodeId: "w", Spec: spec}, api.ErrInvalidArgument, "node w is ambiguous"},
	} {
		_, err := s.updateNode(ctx, tt.req)
		wantErr(t, err, tt.class, tt.text)
	}
	// Promotion is written as the desired role; the manager loop does the rest.
	promote := &api.NodeSpec{DesiredRole: api.NodeRole_MANAGER}
	resp, err = s.updateNode(ctx, &api.UpdateNodeRequest{NodeId: "w2", NodeVersion: get("w2").Meta.Version, Spec: promote})
	if err != nil || resp.Node.Spec.DesiredRole != api.NodeRole_MANAGER || resp.Node.Role != api.NodeRole_WORKER {
		t.Fatalf("promote: %v %v", resp, err)
	}

	list := func(f *api.ListNodesRequest_Filters) int {
		resp, err := s.ListNodes(ctx, &api.ListNodesRequest{Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Nodes)
	}
	for _, tt := range []struct {
		f    *api.ListNodesRequest_Filters
		want int
	}{
		{nil, 3},
		{&api.ListNodesRequest_Filters{Roles: []api.NodeRole{api.NodeRole_MANAGER}}, 1},
		{&api.ListNodesRequest_Filters{Roles: []api.NodeRole{api.NodeRole_WORKER}}, 2},
		{&api.ListNodesRequest_Filters{Names: []string{"host-a", "host-w2"}}, 2},
		{&api.ListNodesRequest_Filters{IdPrefixes: []string{"w"}}, 2},
		{&api.ListNodesRequest_Filters{Labels: map[string]string{"ssd": "true"}}, 1},
	} {
		if got := list(tt.f); got != tt.want {
			t.Errorf("ListNodes(%v) = %d nodes, want %d", tt.f, got, tt.want)
		}
	}
}

func TestCluster(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	_, err := s.GetCluster(ctx, &api.GetClusterRequest{})
	wantErr(t, api.FromGRPC(err), api.ErrNotFound, "not initialized")

	root, err := ca.NewRootCA("c1", epoch)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, st, &api.Cluster{
		Id:     "c1",
		Spec:   &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}, TaskHistoryRetentionLimit: 5},
		RootCa: &api.RootCA{CaCert: root.CertPEM(), CaKey: []byte("secret key"), JoinTokens: &api.JoinTokens{Worker: "w0", Manager: "m0"}},
	})
	got, err := s.GetCluster(ctx, &api.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Cluster.RootCa.CaKey != nil || got.Cluster.RootCa.JoinTokens.Worker != "w0" {
		t.Fatalf("GetCluster: %v", got.Cluster)
	}
	version := got.Cluster.Meta.Version

	for _, tt := range []struct {
		spec  *api.ClusterSpec
		class error
		text  string
	}{
		{nil, api.ErrInvalidArgument, "cluster spec is required"},
		{&api.ClusterSpec{TaskHistoryRetentionLimit: -1}, api.ErrInvalidArgument, "task history retention limit must not be negative"},
		{&api.ClusterSpec{NodeCertExpiry: durationpbOf(60)}, api.ErrInvalidArgument, "at least 1h0m0s"},
		{&api.ClusterSpec{HeartbeatPeriod: durationpbOf(0)}, api.ErrInvalidArgument, "heartbeat period must be positive"},
	} {
		_, err := s.updateCluster(ctx, &api.UpdateClusterRequest{ClusterVersion: version, Spec: tt.spec})
		wantErr(t, err, tt.class, tt.text)
	}
	up, err := s.updateCluster(ctx, &api.UpdateClusterRequest{ClusterVersion: version, Spec: &api.ClusterSpec{TaskHistoryRetentionLimit: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if up.Cluster.Spec.TaskHistoryRetentionLimit != 2 || up.Cluster.Spec.Annotations.GetName() != "default" || up.Cluster.RootCa.CaKey != nil {
		t.Fatalf("UpdateCluster: %v", up.Cluster)
	}
	_, err = s.updateCluster(ctx, &api.UpdateClusterRequest{ClusterVersion: version, Spec: &api.ClusterSpec{TaskHistoryRetentionLimit: 3}})
	wantErr(t, err, api.ErrConflict, "update out of sequence")

	rot, err := s.rotateJoinToken(ctx, &api.RotateJoinTokenRequest{Role: api.NodeRole_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Tokens.Manager != "m0" || rot.Tokens.Worker == "w0" {
		t.Fatalf("rotating the worker token: %v", rot.Tokens)
	}
	tok, err := ca.ParseToken(rot.Tokens.Worker)
	if err != nil || !tok.MatchesCA(root.Cert.Raw) {
		t.Fatalf("new worker token %q does not pin the CA: %v", rot.Tokens.Worker, err)
	}
	rot2, err := s.rotateJoinToken(ctx, &api.RotateJoinTokenRequest{Role: api.NodeRole_MANAGER})
	if err != nil || rot2.Tokens.Manager == "m0" || rot2.Tokens.Worker != rot.Tokens.Worker {
		t.Fatalf("rotating the manager token: %v %v", rot2, err)
	}
	jt, err := s.GetJoinTokens(ctx, &api.GetJoinTokensRequest{})
	if err != nil || jt.Tokens.Manager != rot2.Tokens.Manager {
		t.Fatalf("GetJoinTokens: %v %v", jt, err)
	}
	_, err = s.rotateJoinToken(ctx, &api.RotateJoinTokenRequest{Role: 3})
	wantErr(t, err, api.ErrInvalidArgument, "unknown node role 3")
}

// TestGRPCRoundTrip serves the server on loopback and checks that error
// classes survive the wire: NotFound -> codes.NotFound -> api.ErrNotFound.
func TestGRPCRoundTrip(t *testing.T) {
	s, _ := newTestServer(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	api.RegisterControlServer(gs, s)
	go gs.Serve(lis) // ends with gs.Stop below
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := api.NewControlClient(conn)
	ctx := context.Background()

	created, err := c.CreateService(ctx, &api.CreateServiceRequest{Spec: replicated("web", "busybox", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if created.Service.Spec.GetReplicated().Replicas != 2 {
		t.Fatalf("created %v", created.Service)
	}
	for _, tt := range []struct {
		call  func() error
		code  codes.Code
		class error
		text  string
	}{
		{func() error { _, err := c.GetService(ctx, &api.GetServiceRequest{ServiceId: "db"}); return err },
			codes.NotFound, api.ErrNotFound, "service db not found"},
		{func() error {
			_, err := c.CreateService(ctx, &api.CreateServiceRequest{Spec: replicated("web", "busybox", 1)})
			return err
		}, codes.AlreadyExists, api.ErrConflict, "service web already exists"},
		{func() error {
			_, err := c.CreateService(ctx, &api.CreateServiceRequest{Spec: replicated("api", "", 1)})
			return err
		}, codes.InvalidArgument, api.ErrInvalidArgument, "service api: image is required"},
		{func() error {
			_, err := c.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: 99, Rollback: true})
			return err
		}, codes.AlreadyExists, api.ErrConflict, "update out of sequence"},
		{func() error { _, err := c.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "n1"}); return err },
			codes.NotFound, api.ErrNotFound, "node n1 not found"},
	} {
		err := tt.call()
		if got := status.Code(err); got != tt.code {
			t.Errorf("code %v, want %v (err %v)", got, tt.code, err)
		}
		wantErr(t, api.FromGRPC(err), tt.class, tt.text)
	}
}
