package bridge

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The table of a network, family ip, named "shoal-<bridge>" so that several
// daemons with different bridges share one host without touching each other's
// rules. It is always regenerated whole from the state in one netlink batch
// (add, delete, add again, then the chains): the kernel applies the batch
// atomically, so there is never a moment without NAT, and no rule handles
// need to be remembered. Conntrack entries of running flows survive it.
//
//	table ip shoal-<br> {
//	  chain guard      { type filter hook prerouting priority mangle
//	                     iifname <br> ip daddr 127.0.0.0/8 drop }   # route_localnet must not expose the host's loopback
//	  chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump ports }
//	  chain output     { type nat hook output priority dstnat;     fib daddr type local jump ports }
//	  chain ports      { [ip daddr <hostip>] meta l4proto <p> th dport <hp> dnat to <ip>:<cp> ... }
//	  chain postrouting { type nat hook postrouting priority srcnat
//	                     ip saddr <subnet> oifname != <br> masquerade            # outbound NAT
//	                     oifname <br> ip saddr 127.0.0.0/8 masquerade           # published port reached on 127.0.0.1
//	                     oifname <br> ip saddr <subnet> ct status dnat masquerade } # hairpin
//	  chain forward    { type filter hook forward priority filter - 10
//	                     iifname <br> accept
//	                     oifname <br> ct state established,related accept
//	                     oifname <br> ct status dnat accept }
//	}
//
// The forward chain only documents and counts what this network lets through:
// in nftables an accept ends one base chain only, and a drop in any other base
// chain on the same hook (iptables' FORWARD policy DROP of a Docker host)
// still wins. See firewall.go for how that is handled.

const ipsDstNAT = 0x20 // IPS_DST_NAT of linux/netfilter/nf_conntrack_common.h

func tableName(bridge string) string { return "shoal-" + bridge }

// program replaces the network's table with one generated from s.
func program(o Options, s *state) error {
	bridge := o.Name
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: tableName(bridge), Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio nftables.ChainPriority) *nftables.Chain {
		ch := &nftables.Chain{Name: name, Table: t}
		if hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = typ, hook, nftables.ChainPriorityRef(prio)
		}
		return c.AddChain(ch)
	}
	rule := func(ch *nftables.Chain, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}

	ports := chain("ports", "", nil, 0)
	guard := chain("guard", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, *nftables.ChainPriorityMangle)
	pre := chain("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, *nftables.ChainPriorityNATDest)
	out := chain("output", nftables.ChainTypeNAT, nftables.ChainHookOutput, *nftables.ChainPriorityNATDest)
	post := chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, *nftables.ChainPriorityNATSource)
	fwd := chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, *nftables.ChainPriorityFilter-10)

	loopback := netip.MustParsePrefix("127.0.0.0/8")
	rule(guard, cat(ifname(expr.MetaKeyIIFNAME, bridge, expr.CmpOpEq), ipPrefix(16, loopback), verdict(expr.VerdictDrop))...)
	for _, ch := range []*nftables.Chain{pre, out} {
		rule(ch, cat(fibLocal(), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name}})...)
	}
	for _, pr := range portRules(s) {
		rule(ports, pr...)
	}
	if o.Internal {
		// No way out and no way in: only the bridge's own traffic passes.
		rule(fwd, cat(ifname(expr.MetaKeyIIFNAME, bridge, expr.CmpOpEq), ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpNeq), counter(), verdict(expr.VerdictDrop))...)
		rule(fwd, cat(ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq), ifname(expr.MetaKeyIIFNAME, bridge, expr.CmpOpNeq), counter(), verdict(expr.VerdictDrop))...)
	} else {
		rule(post, cat(ipPrefix(12, s.Subnet), ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpNeq), masq())...)
	}
	rule(post, cat(ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq), ipPrefix(12, loopback), masq())...)
	rule(post, cat(ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq), ipPrefix(12, s.Subnet), ctBits(expr.CtKeySTATUS, ipsDstNAT), masq())...)
	rule(fwd, cat(ifname(expr.MetaKeyIIFNAME, bridge, expr.CmpOpEq), counter(), verdict(expr.VerdictAccept))...)
	rule(fwd, cat(ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq),
		ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), counter(), verdict(expr.VerdictAccept))...)
	rule(fwd, cat(ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq), ctBits(expr.CtKeySTATUS, ipsDstNAT), counter(), verdict(expr.VerdictAccept))...)
	if o.Isolated {
		// What the accepts above let by: a new connection into the bridge
		// from elsewhere (another network's bridge, routed by the host)
		// that is not a published port. A drop is final on the hook.
		rule(fwd, cat(ifname(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq), ifname(expr.MetaKeyIIFNAME, bridge, expr.CmpOpNeq),
			ctBits(expr.CtKeySTATE, expr.CtStateBitNEW), counter(), verdict(expr.VerdictDrop))...)
	}

	if err := c.Flush(); err != nil {
		return fmt.Errorf("program nftables table %s: %w", t.Name, err)
	}
	return nil
}

// removeTable deletes the network's table; a missing table is fine.
func removeTable(bridge string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: tableName(bridge), Family: nftables.TableFamilyIPv4}
	c.AddTable(t) // makes the delete below valid when the table is absent
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w", t.Name, err)
	}
	return nil
}

// portRules returns one DNAT rule per published port, in a stable order.
func portRules(s *state) [][]expr.Any {
	ids := make([]string, 0, len(s.Endpoints))
	for id := range s.Endpoints {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var rules [][]expr.Any
	for _, id := range ids {
		ep := s.Endpoints[id]
		if !ep.IP.IsValid() {
			continue
		}
		for _, pm := range ep.Ports {
			var r []expr.Any
			if pm.HostIP.IsValid() && !pm.HostIP.IsUnspecified() {
				r = append(r, ipPrefix(16, netip.PrefixFrom(pm.HostIP, 32))...)
			}
			proto := byte(unix.IPPROTO_TCP)
			if pm.Protocol == "udp" {
				proto = unix.IPPROTO_UDP
			}
			ip4 := ep.IP.As4()
			r = append(r,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(pm.HostPort)},
				&expr.Immediate{Register: 1, Data: ip4[:]},
				&expr.Immediate{Register: 2, Data: be16(pm.ContainerPort)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			)
			rules = append(rules, r)
		}
	}
	return rules
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifname(key expr.MetaKey, name string, op expr.CmpOp) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b}}
}

// ipPrefix matches the IPv4 source (offset 12) or destination (offset 16)
// address against p.
func ipPrefix(offset uint32, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	addr := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
	}
}

// fibLocal matches packets addressed to any address of this host
// (`fib daddr type local`).
func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(unix.RTN_LOCAL)},
	}
}

// ctBits matches a conntrack key having any of bits set.
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(bits), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
	}
}

func masq() []expr.Any                      { return []expr.Any{&expr.Masq{}} }
func counter() []expr.Any                   { return []expr.Any{&expr.Counter{}} }
func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func be16(v uint16) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, v)
	return b
}

func ne32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
