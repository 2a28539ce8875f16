// Package ingress is the routing mesh: a port published by a service is open
// on every node, and a connection to any node's published port reaches one of
// the service's tasks wherever it runs. Unlike Docker Swarm, the task sees the
// client's real address. docs/network.md ("Routing mesh") has the design.
//
// Two pieces, both nf_tables:
//
//   - Mesh, on the entry node (the host namespace): a connection to a local
//     address on a published port is DNATed straight to a task's address on
//     the ingress network (spread like a VIP, see package lb), with no SNAT.
//     The host routes the ingress subnet through its ingress sandbox, which
//     forwards onto the ingress overlay. `mode=host` publishing is the same
//     table with the node's own task as the only backend.
//   - ReturnPath, in a task's namespace: without SNAT the task answers the
//     client's address, which its default route would send out of its own
//     node, where no conntrack entry can undo the DNAT. ReturnPath marks each
//     connection that came in over the ingress interface with the entry node
//     it came from (recognised by the source MAC of the entry node's ingress
//     sandbox, which routed the packet onto the overlay), and policy routing
//     sends the replies of that connection back to that node.
//
// Tables of the Mesh, family ip:
//
//	table ip <name> {
//	  chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump ports }
//	  chain output     { type nat hook output priority dstnat;     fib daddr type local jump ports }
//	  chain ports      { meta l4proto <p> th dport <published> dnat to numgen random mod N map { ... } : <target> }
//	  chain refuse     { type filter hook input priority filter
//	                     meta l4proto <p> th dport <published> reject }   # a published port without tasks
//	}
package ingress

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/lb"
)

// Port is one published port and the tasks that serve it.
type Port struct {
	// Protocol is "tcp" or "udp".
	Protocol string
	// Published is the port open on the node.
	Published uint16
	// Target is the port the tasks listen on.
	Target uint16
	// Backends are the tasks' addresses on the ingress network (for
	// mode=host, the one local task's address). None refuses connections.
	Backends []netip.Addr
}

// Mesh is the routing-mesh table of one node. It holds no state: Sync
// replaces the kernel's table whole, so a restarted process simply syncs again.
type Mesh struct {
	netnsPath string
	name      string
}

// New returns the mesh table name in the namespace at netnsPath ("" is the
// caller's, the host). Nothing is programmed until Sync.
func New(netnsPath, name string) (*Mesh, error) {
	if name == "" || len(name) > 200 {
		return nil, fmt.Errorf("ingress table %q: invalid name", name)
	}
	return &Mesh{netnsPath: netnsPath, name: name}, nil
}

// Sync makes the node's published ports exactly ports, in one transaction.
// Established connections keep their task.
func (m *Mesh) Sync(ports []Port) error {
	seen := map[string]bool{}
	for _, p := range ports {
		if err := checkPort(p); err != nil {
			return err
		}
		key := fmt.Sprintf("%d/%s", p.Published, p.Protocol)
		if seen[key] {
			return fmt.Errorf("ingress: port %s published twice", key)
		}
		seen[key] = true
	}
	return lb.Batch(m.netnsPath, m.name, "ingress sync", func(c *nftables.Conn, tab *nftables.Table) error {
		c.AddTable(tab)
		c.DelTable(tab)
		c.AddTable(tab)
		hook := func(name string, typ nftables.ChainType, h *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
			return c.AddChain(&nftables.Chain{Name: name, Table: tab, Type: typ, Hooknum: h, Priority: prio})
		}
		portsCh := c.AddChain(&nftables.Chain{Name: "ports", Table: tab})
		refuse := hook("refuse", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
		toPorts := []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: portsCh.Name},
		}
		c.AddRule(&nftables.Rule{Table: tab, Exprs: toPorts,
			Chain: hook("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)})
		c.AddRule(&nftables.Rule{Table: tab, Exprs: toPorts,
			Chain: hook("output", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)})
		for _, p := range ports {
			match := matchPort(p)
			if len(p.Backends) == 0 {
				c.AddRule(&nftables.Rule{Table: tab, Chain: refuse, Exprs: append(match, refusal(p)...)})
				continue
			}
			dnat, err := lb.Spread(c, tab, p.Backends, p.Target)
			if err != nil {
				return fmt.Errorf("port %d/%s: %w", p.Published, p.Protocol, err)
			}
			c.AddRule(&nftables.Rule{Table: tab, Chain: portsCh, Exprs: append(match, dnat...)})
		}
		return nil
	})
}

// Delete removes the mesh table; a missing table is fine.
func (m *Mesh) Delete() error {
	return lb.Batch(m.netnsPath, m.name, "ingress delete", func(c *nftables.Conn, tab *nftables.Table) error {
		c.AddTable(tab) // makes the delete valid when the table is absent
		c.DelTable(tab)
		return nil
	})
}

func checkPort(p Port) error {
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return fmt.Errorf("ingress: port %d: protocol %q is not tcp or udp", p.Published, p.Protocol)
	}
	if p.Published == 0 || p.Target == 0 {
		return fmt.Errorf("ingress: port %d->%d/%s: ports must not be 0", p.Published, p.Target, p.Protocol)
	}
	for _, b := range p.Backends {
		if !b.Is4() {
			return fmt.Errorf("ingress: port %d/%s: backend %s is not an IPv4 address", p.Published, p.Protocol, b)
		}
	}
	return nil
}

func proto(p Port) byte {
	if p.Protocol == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// matchPort is `meta l4proto <p> th dport <published>`.
func matchPort(p Port) []expr.Any {
	dport := []byte{byte(p.Published >> 8), byte(p.Published)}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto(p)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
	}
}

// refusal answers a published port without tasks: a TCP reset, or an ICMP
// port unreachable for UDP.
func refusal(p Port) []expr.Any {
	if proto(p) == unix.IPPROTO_TCP {
		return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
	}
	return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}}
}
