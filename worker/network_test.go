package worker

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/peers"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

var gossipKey = []byte("0123456789abcdef")

// peerLog records what a gossip member was told to program.
type peerLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *peerLog) AddPeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, "add "+ip.String()+" at "+vtep.String())
	return nil
}

func (l *peerLog) RemovePeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, "remove "+ip.String()+" at "+vtep.String())
	return nil
}

func (l *peerLog) has(op string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.ops {
		if o == op {
			return true
		}
	}
	return false
}

// overlayNode sets up a test "host" namespace with an underlay address
// (198.18.251.1 on a veth), an overlay manager and a gossip member in
// it, and an observer member in the same namespace that has an endpoint on
// VNI 4200 and logs what it learns.
func overlayNode(t *testing.T) (*OverlayNetwork, *peerLog) {
	t.Helper()
	dir := t.TempDir()
	hostNS := filepath.Join(dir, "host")
	if err := sandbox.Create(hostNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Remove(hostNS) })
	ip := net.IPv4(198, 18, 251, 1).To4()
	h, err := sandbox.Handle(hostNS)
	if err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = "under0", 1500
	// A veth pair rather than a dummy link: this kernel has no dummy module.
	under := &netlink.Veth{LinkAttrs: la, PeerName: "under1"}
	err = h.LinkAdd(under)
	if err == nil {
		err = h.AddrAdd(under, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}})
	}
	if err == nil {
		err = h.LinkSetUp(under)
	}
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	root, tasks := filepath.Join(dir, "sandboxes"), filepath.Join(dir, "tasks")
	t.Cleanup(func() {
		for _, d := range []string{root, tasks} {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				sandbox.Remove(filepath.Join(d, e.Name()))
			}
		}
	})
	ov, err := overlay.New(overlay.Config{Root: root, HostNetNS: hostNS, LocalIP: ip})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := peers.Start(ctx, peers.Config{NodeName: "node1", BindAddr: ip, VTEP: ip, Keys: [][]byte{gossipKey},
		Program: ov, NetNS: hostNS, LocalNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	log := &peerLog{}
	obs, err := peers.Start(ctx, peers.Config{NodeName: "observer", BindAddr: ip, Port: 7947, VTEP: net.IPv4(198, 18, 251, 2),
		Keys: [][]byte{gossipKey}, Program: log, NetNS: hostNS, LocalNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Join([]string{net.JoinHostPort(ip.String(), "7946")}); err != nil {
		t.Fatal(err)
	}
	if err := obs.Announce(ctx, peers.Endpoint{VNI: 4200, IP: net.IPv4(198, 19, 251, 99), MAC: overlay.MACFromIP(net.IPv4(198, 19, 251, 99))}); err != nil {
		t.Fatal(err)
	}
	return &OverlayNetwork{Overlay: ov, Peers: p, NetNSDir: tasks}, log
}

func overlayTask(id, addr string, cmd ...string) *api.Task {
	task := busyboxTask(id, api.TaskState_RUNNING, api.TaskState_ASSIGNED, cmd...)
	task.Networks = []*api.NetworkAttachment{{
		Network: &api.Network{Id: "net1", Vni: 4200, Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "front"}},
			Ipam: &api.IPAMOptions{Configs: []*api.IPAMConfig{{Subnet: "198.19.251.0/24", Gateway: "198.19.251.1"}}}},
		Addresses: []string{addr},
	}}
	return task
}

// TestAgentAttachesTaskToOverlay: a task whose attachment is filled by hand
// runs in a namespace on its overlay network (reachable from another
// endpoint of the network, MTU underlay-50), its endpoint is gossiped to the
// other nodes; when it stops, the endpoint is withdrawn and its namespace
// removed. A task whose attachment is unusable fails to start with the cause.
func TestAgentAttachesTaskToOverlay(t *testing.T) {
	rt := newEngine(t)
	nw, log := overlayNode(t)
	rt.NetNSDir = nw.NetNSDir
	fm, _ := startAgentCfg(t, rt, 1, 0, func(c *Config) { c.Network = nw })
	task := overlayTask("nettask", "198.19.251.10/24", "httpd", "-f", "-p", "7000", "-h", "/tmp")
	bad := overlayTask("badtask", "198.19.251.11/24", "sleep", "300")
	bad.Networks[0].Addresses = nil
	fm[0].assign <- update(api.AssignmentsMessage_COMPLETE, "", "1", task, bad)
	waitState(t, fm[0], "nettask", api.TaskState_RUNNING)
	if st := waitState(t, fm[0], "badtask", api.TaskState_FAILED); !strings.Contains(st.GetErr(), "network front has no address for task badtask") {
		t.Errorf("bad attachment failed with %q", st.GetErr())
	}

	probeReaches(t, nw, "198.19.251.10:7000")
	h, err := sandbox.Handle(TaskNetNSPath(nw.NetNSDir, "nettask"))
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := h.LinkByName("eth0")
	h.Close()
	if err != nil || eth0.Attrs().MTU != 1450 {
		t.Fatalf("task's eth0: %v, %v; want MTU 1450", eth0, err)
	}
	waitFor(t, "the observer to learn the task's endpoint", func() bool { return log.has("add 198.19.251.10 at 198.18.251.1") })

	stop := proto.Clone(task).(*api.Task)
	stop.DesiredState = api.TaskState_SHUTDOWN
	fm[0].assign <- update(api.AssignmentsMessage_INCREMENTAL, "1", "2", stop)
	waitState(t, fm[0], "nettask", api.TaskState_SHUTDOWN)
	waitFor(t, "the observer to withdraw the task's endpoint", func() bool { return log.has("remove 198.19.251.10 at 198.18.251.1") })
	waitFor(t, "the task's namespace removed", func() bool {
		ok, _ := sandbox.IsNetNS(TaskNetNSPath(nw.NetNSDir, "nettask"))
		return !ok
	})
}

// TestAgentRestartDetachesOrphanedOverlayTask: what an agent that died left
// behind — two running overlay tasks, one still assigned, one not. The
// orphan's container goes with its namespace and its veth (found without
// its attachment); the kept one stays reachable over its network.
func TestAgentRestartDetachesOrphanedOverlayTask(t *testing.T) {
	rt := newEngine(t)
	nw, _ := overlayNode(t)
	rt.NetNSDir = nw.NetNSDir
	ctx := context.Background()
	kept := overlayTask("keep1", "198.19.251.10/24", "httpd", "-f", "-p", "7000", "-h", "/tmp")
	gone := overlayTask("gone1", "198.19.251.11/24", "httpd", "-f", "-p", "7000", "-h", "/tmp")
	for _, task := range []*api.Task{kept, gone} {
		task.Status.State = api.TaskState_RUNNING
		c, err := rt.Create(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		if err := nw.Attach(ctx, task); err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	countVeths := func() int {
		h, err := sandbox.Handle(nw.Overlay.SandboxPath(4200))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		links, _ := h.LinkList()
		n := 0
		for _, l := range links {
			if l.Type() == "veth" {
				n++
			}
		}
		return n
	}
	if n := countVeths(); n != 2 {
		t.Fatalf("%d endpoints before the restart, want 2", n)
	}

	fm, _ := startAgentCfg(t, rt, 1, 0, func(c *Config) { c.Network = nw })
	fm[0].assign <- update(api.AssignmentsMessage_COMPLETE, "", "5", kept)
	waitFor(t, "the orphan removed", func() bool { return taskContainer(rt, "gone1") == nil })
	waitFor(t, "the orphan's namespace and veth gone", func() bool {
		ok, _ := sandbox.IsNetNS(TaskNetNSPath(nw.NetNSDir, "gone1"))
		return !ok && countVeths() == 1
	})
	probeReaches(t, nw, "198.19.251.10:7000")
}

// probeReaches attaches another endpoint (198.19.251.20) to VNI 4200 on
// this node and waits until it can connect to addr over the network.
func probeReaches(t *testing.T, nw *OverlayNetwork, addr string) {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe")
	if err := sandbox.Create(probe); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Remove(probe) })
	gw := &net.IPNet{IP: net.IPv4(198, 19, 251, 1).To4(), Mask: net.CIDRMask(24, 32)}
	if err := nw.Overlay.Attach(overlay.Network{VNI: 4200, Gateway: gw}, overlay.Endpoint{ID: "probe", NetNSPath: probe,
		Addr: &net.IPNet{IP: net.IPv4(198, 19, 251, 20).To4(), Mask: gw.Mask}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Overlay.Detach(4200, "probe") })
	waitFor(t, "a TCP connection to "+addr+" over the network", func() bool {
		return sandbox.Do(probe, func() error {
			c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})
}
