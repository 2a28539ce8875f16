package allocator

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

func nodeAddr(n *api.Node) string {
	for _, a := range n.GetAttachments() {
		if a.GetNetwork().GetSpec().GetIngress() && len(a.GetAddresses()) > 0 {
			return a.GetAddresses()[0]
		}
	}
	return ""
}

// TestAllocateIngress: every node gets an entry address on the ingress
// network, a task publishing through the mesh an address there besides its
// own networks' and its service's allocated ports; nothing is given twice,
// a removed node's address is free again, and the entries go with the
// network.
func TestAllocateIngress(t *testing.T) {
	snap := Snapshot{Cluster: testCluster("198.18.0.0/16", 28)}
	app := mustNet(t, &snap, "app", "", "")
	web := service("web", "app")
	web.Spec.Endpoint = &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	web.Endpoint = &api.Endpoint{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	snap.Services = []*api.Service{web}
	tk := task("t0", web)
	tk.Endpoint = &api.Endpoint{Spec: proto.Clone(web.Spec.Endpoint).(*api.EndpointSpec)}
	snap.Tasks = []*api.Task{tk}
	snap.Nodes = []*api.Node{{Id: "n1"}, {Id: "n2"}}

	// No ingress network yet: the task waits, saying why; nodes get nothing.
	res := Allocate(snap)
	if r := res.Failed["t0"]; !strings.Contains(r, "no ingress network") || len(res.Nodes) != 0 {
		t.Fatalf("without an ingress network: failed %v, nodes %v", res.Failed, res.Nodes)
	}
	if Allocated(tk) {
		t.Fatal("a task publishing through the mesh counts as allocated without an ingress address")
	}

	in, err := AllocateNetwork(snap, &api.Network{Id: "in", Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: IngressNetworkName}, Ingress: true}})
	if err != nil {
		t.Fatal(err)
	}
	snap.Networks = append(snap.Networks, in)
	res = Allocate(snap)
	if len(res.Failed) != 0 || len(res.Nodes) != 2 || len(res.Tasks) != 1 {
		t.Fatalf("result: %+v", res)
	}
	seen := map[string]bool{}
	for _, n := range res.Nodes {
		a := nodeAddr(n)
		if a == "" || seen[a] {
			t.Fatalf("node %s entry %q (seen %v)", n.GetId(), a, seen)
		}
		seen[a] = true
	}
	got := res.Tasks[0]
	if !Allocated(got) || len(got.GetNetworks()) != 2 || got.GetNetworks()[0].GetNetwork().GetId() != app.GetId() ||
		!got.GetNetworks()[1].GetNetwork().GetSpec().GetIngress() {
		t.Fatalf("task networks: %v", got.GetNetworks())
	}
	if a := got.GetNetworks()[1].GetAddresses()[0]; seen[a] {
		t.Fatalf("task got a node's entry address %s", a)
	}
	if p := got.GetEndpoint().GetPorts(); len(p) != 1 || p[0].GetPublishedPort() != 8080 {
		t.Fatalf("task endpoint ports: %v", p)
	}
	apply(&snap, res)
	if res := Allocate(snap); len(res.Services)+len(res.Tasks)+len(res.Nodes)+len(res.Failed) != 0 {
		t.Fatalf("second pass is not a no-op: %+v", res)
	}

	// n1 removed: its address goes to the next newcomer.
	freed := nodeAddr(snap.Nodes[0])
	snap.Nodes = []*api.Node{snap.Nodes[1], {Id: "n3"}}
	res = Allocate(snap)
	if len(res.Nodes) != 1 || nodeAddr(res.Nodes[0]) != freed {
		t.Fatalf("n3 got %v, want the freed %s", res.Nodes, freed)
	}
	apply(&snap, res)

	// The ingress network removed: the entries go.
	snap.Networks = snap.Networks[:1]
	res = Allocate(snap)
	if len(res.Nodes) != 2 || nodeAddr(res.Nodes[0]) != "" || nodeAddr(res.Nodes[1]) != "" {
		t.Fatalf("entries after the ingress network went: %v", res.Nodes)
	}
}

// TestAllocateContainerAttachments: a node's container attachments (run
// --network on an attachable network) get addresses no task or other
// container has, keep them across passes, and free them when dropped; one
// on a network that is gone goes.
func TestAllocateContainerAttachments(t *testing.T) {
	snap := Snapshot{Cluster: testCluster("198.18.0.0/16", 29)} // .1 gateway, .2-.6
	app := mustNet(t, &snap, "app", "", "")
	pending := func(cid string) *api.NetworkAttachment {
		return &api.NetworkAttachment{Network: &api.Network{Id: app.GetId()}, ContainerId: cid}
	}
	snap.Nodes = []*api.Node{{Id: "n1", Attachments: []*api.NetworkAttachment{pending("c1"), pending("c2")}}, {Id: "n2", Attachments: []*api.NetworkAttachment{pending("c3")}}}
	res := Allocate(snap)
	seen := map[string]bool{}
	for _, n := range res.Nodes {
		for _, a := range n.GetAttachments() {
			if len(a.GetAddresses()) != 1 || seen[a.GetAddresses()[0]] || a.GetNetwork().GetVni() != app.GetVni() {
				t.Fatalf("attachment %v (seen %v)", a, seen)
			}
			seen[a.GetAddresses()[0]] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("addresses %v, want 3", seen)
	}
	apply(&snap, res)
	if res := Allocate(snap); len(res.Nodes) != 0 {
		t.Fatalf("second pass is not a no-op: %v", res.Nodes)
	}
	// c1 goes; four more ask: three fit (.5, .6 and c1's), the last waits.
	n1 := proto.Clone(snap.Nodes[0]).(*api.Node)
	freed := n1.Attachments[0].GetAddresses()[0]
	n1.Attachments = append(n1.Attachments[1:], pending("c4"), pending("c5"), pending("c6"), pending("c7"))
	snap.Nodes[0] = n1
	res = Allocate(snap)
	var got []string
	waiting := 0
	for _, a := range res.Nodes[0].GetAttachments() {
		if a.GetContainerId() >= "c4" {
			if len(a.GetAddresses()) == 0 {
				waiting++
			} else {
				got = append(got, a.GetAddresses()[0])
			}
		}
	}
	if len(got) != 3 || waiting != 1 || !slices.Contains(got, freed) {
		t.Fatalf("after c1 went: given %v (freed %s), waiting %d", got, freed, waiting)
	}
	// The network goes: so do its attachments.
	snap.Networks = nil
	res = Allocate(snap)
	for _, n := range res.Nodes {
		if len(n.GetAttachments()) != 0 {
			t.Fatalf("node %s keeps %v after its network went", n.GetId(), n.GetAttachments())
		}
	}
}
