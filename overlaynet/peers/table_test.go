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
