package ingress

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
	"github.com/shoal-project/shoal/overlaynet/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

const (
	clientIP  = "198.18.1.2"
	published = "198.18.1.1:8080"
)

// mesh is an entry node "node" with an uplink to a client (198.18.1.0/24) and
// the ingress network 198.18.2.0/24 on bridge ing0 (standing for its ingress
// sandbox and the overlay), and two tasks t1, t2 on the ingress network whose
// default route goes to another node's gateway (198.18.2.254, absent): what a
// task on another node has, so replies not steered back are lost.
type mesh struct {
	node   string
	client string
	tasks  map[string]string // name -> netns
	addrs  []netip.Addr
	entry  Entry
	m      *Mesh
}

func newMesh(t *testing.T) mesh {
	t.Helper()
	node, client := sandboxtest.NS(t, "node"), sandboxtest.NS(t, "client")
	sandboxtest.Link(t, node, "up0", "", "198.18.1.1/24", client, "eth0", clientIP+"/24")
	sandboxtest.DefaultRoute(t, client, "198.18.1.1")
	sandboxtest.Bridge(t, node, "ing0", "198.18.2.1/24")
	sandboxtest.Forwarding(t, node)
	ms := mesh{node: node, client: client, tasks: map[string]string{}}
	for i, name := range []string{"t1", "t2"} {
		ns := sandboxtest.NS(t, name)
		a := netip.AddrFrom4([4]byte{198, 18, 2, byte(11 + i)})
		sandboxtest.Link(t, node, "v"+name, "ing0", "", ns, "eth0", a.String()+"/24")
		sandboxtest.DefaultRoute(t, ns, "198.18.2.254")
		sandboxtest.Serve(t, ns, name, 80)
		ms.tasks[name] = ns
		ms.addrs = append(ms.addrs, a)
	}
	// Read after the ports are added: a bridge takes its MAC from them.
	ms.entry = Entry{MAC: sandboxtest.MAC(t, node, "ing0"), Gateway: netip.MustParseAddr("198.18.2.1")}
	m, err := New(node, "shoal-ingress")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Delete() })
	ms.m = m
	return ms
}

func TestMeshKeepsClientAddress(t *testing.T) {
	sandboxtest.NeedRoot(t)
	ms := newMesh(t)
	client := ms.client
	if err := ms.m.Sync([]Port{{Protocol: "tcp", Published: 8080, Target: 80, Backends: ms.addrs}}); err != nil {
		t.Fatal(err)
	}
	// Without the return path the tasks answer through their own default
	// route and the client never hears back: no SNAT, and nothing else yet.
	if c, _, err := sandboxtest.Dial(client, published, 500*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("connected without a return path: the test topology does not make the return path matter")
	}
	for _, ns := range ms.tasks {
		if err := ReturnPath(ns, "eth0", []Entry{ms.entry}, nil); err != nil {
			t.Fatal(err)
		}
		// Calling it again replaces, it does not stack rules.
		if err := ReturnPath(ns, "eth0", []Entry{ms.entry}, nil); err != nil {
			t.Fatal(err)
		}
	}
	seen := sandboxtest.Hits(t, client, published, 20)
	names := map[string]bool{}
	for h := range seen {
		if h.Peer != clientIP {
			t.Fatalf("task %s saw the client as %s, want its real address %s (all: %v)", h.Name, h.Peer, clientIP, seen)
		}
		names[h.Name] = true
	}
	if len(names) != 2 {
		t.Fatalf("20 connections reached %v, want both tasks", seen)
	}

	// The task's own traffic is not steered: one policy rule per entry only.
	h, err := sandbox.Handle(ms.tasks["t1"])
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	countRules := func() int {
		rules, err := h.RuleList(netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rules {
			if r.Table >= returnBase && r.Table < returnBase+maxEntries {
				n++
			}
		}
		return n
	}
	if n := countRules(); n != 1 {
		t.Fatalf("%d return-path rules, want 1", n)
	}
	if err := ReturnPath(ms.tasks["t1"], "eth0", nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := countRules(); n != 0 {
		t.Fatalf("%d return-path rules after removing the entries, want 0", n)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: returnBase}, netlink.RT_FILTER_TABLE)
	if err != nil || len(routes) != 0 {
		t.Fatalf("routes left in the return table: %v, %v", routes, err)
	}
}

func TestMeshRefusesWithoutTasks(t *testing.T) {
	sandboxtest.NeedRoot(t)
	ms := newMesh(t)
	client := ms.client
	for _, ns := range ms.tasks {
		if err := ReturnPath(ns, "eth0", []Entry{ms.entry}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// mode=host: only the node's own task.
	if err := ms.m.Sync([]Port{{Protocol: "tcp", Published: 8080, Target: 80, Backends: ms.addrs[:1]}}); err != nil {
		t.Fatal(err)
	}
	for h := range sandboxtest.Hits(t, client, published, 5) {
		if h.Name != "t1" || h.Peer != clientIP {
			t.Fatalf("host-mode port reached %+v, want t1 seeing %s", h, clientIP)
		}
	}
	if err := ms.m.Sync([]Port{{Protocol: "tcp", Published: 8080, Target: 80}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := sandboxtest.Dial(client, published, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("published port without tasks: %v, want connection refused", err)
	}
	// ECONNREFUSED is the outcome (a dropped SYN would end in a timeout);
	// the time is a figure, not a pass mark.
	t.Logf("refused after %v", time.Since(start))
	// A restarted process syncs again over the table it finds.
	again, _ := New(ms.node, "shoal-ingress")
	if err := again.Sync([]Port{{Protocol: "tcp", Published: 8080, Target: 80, Backends: ms.addrs[1:]}}); err != nil {
		t.Fatal(err)
	}
	for h := range sandboxtest.Hits(t, client, published, 5) {
		if h.Name != "t2" {
			t.Fatalf("after the resync reached %+v, want t2", h)
		}
	}
}

func TestBadInput(t *testing.T) {
	m, _ := New("/nonexistent/netns", "x")
	v6 := netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		ports []Port
		want  string
	}{
		{[]Port{{Protocol: "sctp", Published: 1, Target: 1}}, "not tcp or udp"},
		{[]Port{{Protocol: "tcp", Published: 0, Target: 1}}, "must not be 0"},
		{[]Port{{Protocol: "tcp", Published: 1, Target: 1, Backends: []netip.Addr{v6}}}, "not an IPv4"},
		{[]Port{{Protocol: "tcp", Published: 1, Target: 1}, {Protocol: "tcp", Published: 1, Target: 2}}, "published twice"},
		{[]Port{{Protocol: "udp", Published: 1, Target: 1}}, "/nonexistent/netns"},
	} {
		if err := m.Sync(tc.ports); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Sync(%+v) = %v, want an error with %q", tc.ports, err, tc.want)
		}
	}
	if err := ReturnPath("/x", "eth0", []Entry{{Gateway: netip.MustParseAddr("198.18.2.1")}}, nil); err == nil {
		t.Error("ReturnPath accepted an entry without a MAC")
	}
	if _, err := New("", ""); err == nil {
		t.Error("New with an empty name succeeded")
	}
}
