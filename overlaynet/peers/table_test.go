package peers

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"slices"
	"testing"
)

// recorder is the Programmer of the table tests: the table's decisions
// are the unit here, the kernel side is tested in overlaynet/overlay.
type recorder struct{ ops []string }

func (r *recorder) AddPeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error {
	r.ops = append(r.ops, "add "+ip.String()+" at "+vtep.String())
	return nil
}

func (r *recorder) RemovePeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error {
	r.ops = append(r.ops, "remove "+ip.String()+" at "+vtep.String())
	return nil
}

func stateOf(node, vtep string, version uint64, ips ...string) []byte {
	s := state{Node: node, VTEP: vtep, Version: version}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, wireEntry{VNI: 4096, IP: ip, MAC: "02:42:c6:13:00:0a"})
	}
	b, _ := json.Marshal(s)
	return b
}

func newTable(rec *recorder) *table {
	p := &Peers{cfg: Config{NodeName: "me", Program: rec}, logger: log.New(io.Discard, "", 0)}
	t := &table{p: p, local: map[string]Endpoint{}, remotes: map[string]*remote{}}
	t.local["4096/198.19.0.2"] = Endpoint{VNI: 4096, IP: net.ParseIP("198.19.0.2")}
	return t
}

// TestTableAddressMovesBetweenNodes: an address freed on node a and given
// to a task on node b; b's news arrives first. a's late withdrawal must not
// remove b's entry; b's own withdrawal (it dies) removes it.
func TestTableAddressMovesBetweenNodes(t *testing.T) {
	rec := &recorder{}
	tb := newTable(rec)
	tb.merge(stateOf("a", "198.18.0.1", 1, "198.19.0.10"))
	tb.merge(stateOf("b", "198.18.0.2", 1, "198.19.0.10"))
	tb.merge(stateOf("a", "198.18.0.1", 2))
	want := []string{"add 198.19.0.10 at 198.18.0.1", "add 198.19.0.10 at 198.18.0.2", "add 198.19.0.10 at 198.18.0.2"}
	if !slices.Equal(rec.ops, want) {
		t.Fatalf("ops %q, want %q", rec.ops, want)
	}
	rec.ops = nil
	tb.gone("b")
	if want := []string{"remove 198.19.0.10 at 198.18.0.2"}; !slices.Equal(rec.ops, want) {
		t.Fatalf("ops after b died %q, want %q", rec.ops, want)
	}
}

// TestTableIgnoresStaleAndForeign: an older state of a node changes
// nothing, nor does one on a network this node has no endpoint on, nor a
// state claiming to be this node's, nor garbage.
func TestTableIgnoresStaleAndForeign(t *testing.T) {
	rec := &recorder{}
	tb := newTable(rec)
	tb.merge(stateOf("a", "198.18.0.1", 5, "198.19.0.10"))
	tb.merge(stateOf("a", "198.18.0.1", 4))
	tb.merge(stateOf("me", "198.18.0.9", 9, "198.19.0.11"))
	tb.merge([]byte("{not json"))
	other := state{Node: "c", VTEP: "198.18.0.3", Version: 1, Endpoints: []wireEntry{{VNI: 7, IP: "198.19.0.12", MAC: "02:42:c6:13:00:0c"}}}
	b, _ := json.Marshal(other)
	tb.merge(b)
	if want := []string{"add 198.19.0.10 at 198.18.0.1"}; !slices.Equal(rec.ops, want) {
		t.Fatalf("ops %q, want %q", rec.ops, want)
	}
}

// TestTableCarriesTaskInfo: what a node says of its endpoints' tasks
// (service discovery) survives the wire, and the table lists its own and
// the others' endpoints by network, an address claimed twice once.
func TestTableCarriesTaskInfo(t *testing.T) {
	tb := newTable(&recorder{})
	changes := 0
	tb.p.cfg.Changed = func() { changes++ }
	tb.local["4096/198.19.0.2"] = Endpoint{VNI: 4096, IP: net.ParseIP("198.19.0.2"), MAC: net.HardwareAddr{2, 0x42, 198, 19, 0, 2}}
	web := TaskInfo{Name: "web.1.x", Service: "web", ServiceID: "s1", VIP: net.ParseIP("198.19.0.250").To4(), Aliases: []string{"www"}, Serving: true}
	s := state{Node: "a", VTEP: "198.18.0.1", Version: 1, Endpoints: []wireEntry{
		toWire(Endpoint{VNI: 4096, IP: net.ParseIP("198.19.0.10"), MAC: net.HardwareAddr{2, 0x42, 198, 19, 0, 10}, Task: web}),
		toWire(Endpoint{VNI: 4096, IP: net.ParseIP("198.19.0.2"), MAC: net.HardwareAddr{2, 0x42, 198, 19, 0, 2}}),
		toWire(Endpoint{VNI: 7, IP: net.ParseIP("198.19.1.10"), MAC: net.HardwareAddr{2, 0x42, 198, 19, 1, 10}, Task: TaskInfo{Service: "rr", DNSRR: true}}),
	}}
	b, _ := json.Marshal(s)
	tb.merge(b)
	if changes != 1 {
		t.Fatalf("%d change notices, want 1", changes)
	}
	got := tb.endpoints([]uint32{4096})
	if len(got) != 2 {
		t.Fatalf("endpoints of 4096: %+v", got)
	}
	for _, e := range got {
		if e.IP.String() == "198.19.0.10" {
			ti := e.Task
			if ti.Name != web.Name || ti.Service != "web" || ti.ServiceID != "s1" || !ti.VIP.Equal(web.VIP) || ti.DNSRR || !slices.Equal(ti.Aliases, web.Aliases) || !ti.Serving {
				t.Fatalf("task info %+v, want %+v", ti, web)
			}
		}
	}
	if all := tb.endpoints(nil); len(all) != 3 {
		t.Fatalf("all endpoints: %+v", all)
	}
	if rr := tb.endpoints([]uint32{7}); len(rr) != 1 || !rr[0].Task.DNSRR || rr[0].Task.VIP != nil {
		t.Fatalf("dnsrr endpoint: %+v", rr)
	}
}

// TestTableAnswersNewcomers: the first state of a node, the first after it
// was given up for dead, and a hello are answered with this node's own;
// later versions are not.
func TestTableAnswersNewcomers(t *testing.T) {
	tb := newTable(&recorder{})
	var answered []string
	tb.answer = func(node string) { answered = append(answered, node) }
	tb.merge(stateOf("a", "198.18.0.1", 1, "198.19.0.10"))
	tb.merge(stateOf("a", "198.18.0.1", 2, "198.19.0.11"))
	tb.merge(stateOf("a", "198.18.0.1", 2, "198.19.0.11"))
	tb.gone("a")
	tb.merge(stateOf("a", "198.18.0.1", 2, "198.19.0.11"))
	// A hello is answered even when its state is not news: its sender may
	// have dropped this node's endpoints while this one kept its own.
	var hello state
	json.Unmarshal(stateOf("a", "198.18.0.1", 2, "198.19.0.11"), &hello)
	hello.Hello = true
	b, _ := json.Marshal(hello)
	tb.merge(b)
	if want := []string{"a", "a", "a"}; !slices.Equal(answered, want) {
		t.Fatalf("answered %q, want %q (the first state, the first after the node was gone, a hello)", answered, want)
	}
}

// TestTableWithdrawOnlyOwnTask: an address freed by an ended task and given
// to a new task on the same node before the old one's teardown: the late
// withdrawal of the old task leaves the new task's endpoint announced (its
// own withdrawal is TestGossipAcrossHosts's, with a gossip member).
func TestTableWithdrawOnlyOwnTask(t *testing.T) {
	tb := newTable(&recorder{})
	ip := net.ParseIP("198.19.0.9")
	old := Endpoint{VNI: 4096, IP: ip, Task: TaskInfo{Name: "hc.1.aaa"}}
	young := Endpoint{VNI: 4096, IP: ip, Task: TaskInfo{Name: "web.3.bbb", Serving: true}}
	tb.local[young.key()] = young
	tb.withdraw(old)
	if got, ok := tb.local[young.key()]; !ok || got.Task.Name != "web.3.bbb" {
		t.Fatalf("the old task's withdrawal removed the new task's endpoint: %v %v", got, ok)
	}
}

// TestTableIgnoresStateOfLeftNode: a state of node a merged after a left
// (it was in flight) must not bring a's endpoints back; once a is a member
// again, its state counts.
func TestTableIgnoresStateOfLeftNode(t *testing.T) {
	rec := &recorder{}
	tb := newTable(rec)
	members := map[string]bool{"a": true}
	tb.member = func(node string) bool { return members[node] }
	tb.merge(stateOf("a", "198.18.0.1", 1, "198.19.0.10"))
	members["a"] = false
	tb.gone("a")
	tb.merge(stateOf("a", "198.18.0.1", 1, "198.19.0.10"))
	want := []string{"add 198.19.0.10 at 198.18.0.1", "remove 198.19.0.10 at 198.18.0.1"}
	if !slices.Equal(rec.ops, want) {
		t.Fatalf("ops %q, want %q", rec.ops, want)
	}
	members["a"] = true
	tb.merge(stateOf("a", "198.18.0.1", 2, "198.19.0.10"))
	if want = append(want, "add 198.19.0.10 at 198.18.0.1"); !slices.Equal(rec.ops, want) {
		t.Fatalf("ops after a rejoined %q, want %q", rec.ops, want)
	}
}
