package ingress

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/lb"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// Entry is one node's ingress sandbox as a task sees it on the ingress
// network: the MAC it routes published-port traffic from, and its address.
type Entry struct {
	MAC     net.HardwareAddr
	Gateway netip.Addr
}

// The marks and routing tables of ReturnPath: entry i gets mark and table
// returnBase+i. The range is ours inside a task's namespace.
const (
	returnBase  = 0x5348_0000
	returnTable = "shoal-ingress-return"
	maxEntries  = 0xffff
)

// ReturnPath programs the task namespace at netnsPath so that a connection
// that arrived on iface from one of entries is answered through that entry:
//
//	table ip shoal-ingress-return {
//	  map entries { type ether_addr : mark }      # entry i's MAC -> returnBase+i
//	  chain pre { type filter hook prerouting priority mangle
//	              iifname <iface> ct state new ct mark set ether saddr map @entries
//	              ct mark != 0 meta mark set ct mark }
//	  chain out { type route hook output priority mangle
//	              ct mark != 0 meta mark set ct mark }   # route type: re-routed by the mark
//	}
//	ip rule fwmark returnBase+i lookup returnBase+i
//	ip route table returnBase+i default via <entry i's gateway> dev <iface>
//
// Connections from elsewhere (a VIP on an overlay, the task's own outbound
// ones) carry no mark and use the main table. Calling it again replaces the
// entries; no entries removes it all.
//
// UDP needs one more rule per published UDP target port of the task:
//
//	ip rule ipproto udp sport <port> lookup returnBase    # entry 0's table
//
// A UDP server answering from an unbound socket has its source address
// chosen by the route to the client before any mark is set, and the main
// table's route (the node's gateway bridge) would give the reply that
// interface's address: the reply would match no connection, here or at the
// entry, and be lost. Routed by its source port the reply gets the ingress
// address, matches the incoming connection, and the mark then sends it to
// the entry it came from. The cost: the task's own outbound UDP sent from
// such a port goes out through an entry too (a server rarely sends from
// its listening port).
func ReturnPath(netnsPath, iface string, entries []Entry, udpPorts []uint16) error {
	if iface == "" || len(iface) >= unix.IFNAMSIZ {
		return fmt.Errorf("ingress return path: invalid interface name %q", iface)
	}
	if len(entries) > maxEntries {
		return fmt.Errorf("ingress return path: %d entries, at most %d", len(entries), maxEntries)
	}
	for _, e := range entries {
		if len(e.MAC) != 6 || !e.Gateway.Is4() {
			return fmt.Errorf("ingress return path: entry %s/%s: need an Ethernet MAC and an IPv4 gateway", e.MAC, e.Gateway)
		}
	}
	if err := returnRoutes(netnsPath, iface, entries, udpPorts); err != nil {
		return fmt.Errorf("ingress return path in %s: %w", netnsPath, err)
	}
	return lb.Batch(netnsPath, returnTable, "ingress return path", func(c *nftables.Conn, tab *nftables.Table) error {
		c.AddTable(tab)
		c.DelTable(tab)
		if len(entries) == 0 {
			return nil
		}
		c.AddTable(tab)
		m := &nftables.Set{Table: tab, Name: "entries", IsMap: true, KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeMark}
		elems := make([]nftables.SetElement, len(entries))
		for i, e := range entries {
			elems[i] = nftables.SetElement{Key: []byte(e.MAC), Val: ne32(returnBase + uint32(i))}
		}
		if err := c.AddSet(m, elems); err != nil {
			return fmt.Errorf("entries map: %w", err)
		}
		pre := c.AddChain(&nftables.Chain{Name: "pre", Table: tab, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		out := c.AddChain(&nftables.Chain{Name: "out", Table: tab, Type: nftables.ChainTypeRoute,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
		ifname := make([]byte, unix.IFNAMSIZ)
		copy(ifname, iface)
		c.AddRule(&nftables.Rule{Table: tab, Chain: pre, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(expr.CtStateBitNEW), Xor: ne32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
		}})
		copyMark := []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
		}
		c.AddRule(&nftables.Rule{Table: tab, Chain: pre, Exprs: copyMark})
		c.AddRule(&nftables.Rule{Table: tab, Chain: out, Exprs: copyMark})
		return nil
	})
}

// returnRoutes replaces the policy rules and routing tables of entries.
func returnRoutes(netnsPath, iface string, entries []Entry, udpPorts []uint16) error {
	h, err := sandbox.Handle(netnsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	rules, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	for _, r := range rules {
		if r.Table < returnBase || r.Table >= returnBase+maxEntries {
			continue
		}
		if err := h.RuleDel(&r); err != nil {
			return fmt.Errorf("delete rule to table %#x: %w", r.Table, err)
		}
		if r.Table < returnBase+len(entries) {
			continue // its route is replaced below
		}
		// An entry that went away: empty its table too.
		routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: r.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes of table %#x: %w", r.Table, err)
		}
		for _, rt := range routes {
			if err := h.RouteDel(&rt); err != nil {
				return fmt.Errorf("delete route of table %#x: %w", r.Table, err)
			}
		}
	}
	if len(entries) == 0 {
		return nil
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("find %s: %w", iface, err)
	}
	for i, e := range entries {
		id := returnBase + i
		gw := e.Gateway.As4()
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw[:]), Table: id}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("route via %s in table %#x: %w", e.Gateway, id, err)
		}
		r := netlink.NewRule()
		r.Family, r.Mark, r.Table, r.Priority = netlink.FAMILY_V4, uint32(id), id, 1000
		mask := ^uint32(0)
		r.Mask = &mask
		if err := h.RuleAdd(r); err != nil {
			return fmt.Errorf("rule fwmark %#x: %w", id, err)
		}
	}
	for _, p := range udpPorts {
		r := netlink.NewRule()
		r.Family, r.IPProto, r.Table, r.Priority = netlink.FAMILY_V4, unix.IPPROTO_UDP, returnBase, 1001
		r.Sport = netlink.NewRulePortRange(p, p)
		if err := h.RuleAdd(r); err != nil {
			return fmt.Errorf("rule udp sport %d: %w", p, err)
		}
	}
	return nil
}

func ne32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
