// Package lb load-balances a network's virtual IPs (VIPs) with nf_tables: a
// connection to a service's VIP is DNATed to one of the service's task
// addresses, picked at random per new connection; conntrack keeps every
// established connection on the backend it started with.
//
// Where the DNAT happens: in the namespace of the client, i.e. each
// container's own netns (output hook), which is what Docker does with IPVS in
// every container's namespace. A task can then reach the VIP of its own network
// without any help from the network: the first packet of a connection is
// rewritten before it leaves the container, so it is routed to the backend like
// any other peer address, the backend sees the client's real address, and the
// reply comes straight back to the client whose conntrack entry undoes the
// translation. Doing it once in the per-network sandbox instead would need the
// VIP to answer ARP on the bridge and, for a client and a backend on the same
// bridge, an SNAT so the reply goes back through the sandbox (the hairpin
// case) — the backend would lose the client's address. The cost of the
// per-container choice is one small table per container, each updated when a
// service's tasks change. The table also hooks prerouting/forward, so the same
// code serves a router namespace (the ingress sandbox) unchanged.
//
// The table of a namespace, family ip:
//
//	table ip <name> {
//	  map vips { type ipv4_addr : verdict }             # VIP -> goto vip-<VIP>
//	  set known { type ipv4_addr }                      # the same VIPs, for the filter chains
//	  chain output     { type nat hook output priority dstnat;     ip daddr vmap @vips }
//	  chain prerouting { type nat hook prerouting priority dstnat; ip daddr vmap @vips }
//	  chain vip-<VIP>  { dnat to numgen random mod N map { 0 : <b0>, 1 : <b1>, ... } }
//	  chain refuse-out { type filter hook output priority filter
//	                     ip daddr @known ct status & dnat == 0 meta l4proto tcp reject with tcp reset
//	                     ip daddr @known ct status & dnat == 0 reject }   # icmp port unreachable
//	  chain refuse-fwd { type filter hook forward priority filter; same rules }
//	}
//
// The filter chains need their own set: the kernel validates every chain a
// verdict map jumps to against each chain that looks the map up, and a DNAT
// rule is not allowed in a filter chain.
//
// A VIP with no backends has an empty chain: nothing translates it, and the
// refuse chains turn the connection away at once instead of letting it time
// out. The kernel holds all the state: Set and Remove change one VIP in one
// netlink batch (applied atomically), so a restarted process adopts the table
// as it finds it, and Sync replaces the whole table with the desired state.
package lb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipsDstNAT is IPS_DST_NAT of linux/netfilter/nf_conntrack_common.h.
const ipsDstNAT = 0x20

// Table is one load-balancing table in one network namespace. It holds no
// state of its own: every call reads and writes the kernel's table, so two
// Table values (or two processes) naming the same table see the same VIPs.
type Table struct {
	netnsPath string
	name      string
}

// New returns the table name in the namespace at netnsPath ("" means the
// caller's namespace). Nothing is programmed until the first Set or Sync.
func New(netnsPath, name string) (*Table, error) {
	if name == "" || len(name) > 200 {
		return nil, fmt.Errorf("lb table %q: invalid name", name)
	}
	return &Table{netnsPath: netnsPath, name: name}, nil
}

func (t *Table) batch(what string, fn func(c *nftables.Conn, tab *nftables.Table) error) error {
	return Batch(t.netnsPath, t.name, "lb "+what, fn)
}

// Batch opens an nftables connection into the namespace at netnsPath ("" is
// the caller's), lets fn queue a transaction on the ip table named table and
// sends it as one batch, which the kernel applies atomically. what prefixes
// errors. The routing mesh (package ingress) programs its tables with it too.
func Batch(netnsPath, table, what string, fn func(c *nftables.Conn, tab *nftables.Table) error) error {
	var opts []nftables.ConnOption
	if netnsPath != "" {
		ns, err := netns.GetFromPath(netnsPath)
		if err != nil {
			return fmt.Errorf("%s: open netns %s: %w", what, netnsPath, err)
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("%s: nftables: %w", what, err)
	}
	tab := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	if err := fn(c, tab); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%s in table %s: %w", what, table, err)
	}
	return nil
}

// Set makes connections to vip go to backends, replacing any earlier set in
// one transaction: connections opened after Set returns use only the new set,
// established ones stay where they are. An empty backends refuses new
// connections to vip. Setting the same set twice is harmless.
func (t *Table) Set(vip netip.Addr, backends []netip.Addr) error {
	if err := checkAddrs(vip, backends); err != nil {
		return err
	}
	return t.batch("set "+vip.String(), func(c *nftables.Conn, tab *nftables.Table) error {
		return setVIP(c, tab, skeleton(c, tab), vip, backends)
	})
}

// Remove forgets vip: new connections to it are neither translated nor
// refused. Removing an unknown VIP is not an error.
func (t *Table) Remove(vip netip.Addr) error {
	if !vip.Is4() {
		return fmt.Errorf("lb remove %s: not an IPv4 address", vip)
	}
	return t.batch("remove "+vip.String(), func(c *nftables.Conn, tab *nftables.Table) error {
		s := skeleton(c, tab)
		// Adding the chain and the elements first makes the deletes valid
		// when they are absent, inside the same atomic batch.
		ch := c.AddChain(&nftables.Chain{Name: vipChain(vip), Table: tab})
		if err := s.add(c, vip, ch); err != nil {
			return err
		}
		for _, set := range []*nftables.Set{s.vips, s.known} {
			if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: addr4(vip)}}); err != nil {
				return err
			}
		}
		c.FlushChain(ch)
		c.DelChain(ch)
		return nil
	})
}

// Sync replaces the whole table with exactly the VIPs of all, in one
// transaction: what a restarted process calls once it knows the desired
// state, dropping VIPs that went away while it was down.
func (t *Table) Sync(all map[netip.Addr][]netip.Addr) error {
	keys := make([]netip.Addr, 0, len(all))
	for vip, bs := range all {
		if err := checkAddrs(vip, bs); err != nil {
			return err
		}
		keys = append(keys, vip)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return t.batch("sync", func(c *nftables.Conn, tab *nftables.Table) error {
		c.AddTable(tab)
		c.DelTable(tab)
		s := skeleton(c, tab)
		for _, vip := range keys {
			if err := setVIP(c, tab, s, vip, all[vip]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Delete removes the table; a missing table is fine.
func (t *Table) Delete() error {
	return t.batch("delete", func(c *nftables.Conn, tab *nftables.Table) error {
		c.AddTable(tab) // makes the delete valid when the table is absent
		c.DelTable(tab)
		return nil
	})
}

// VIPs returns the VIPs currently in the kernel's table (none if the table
// does not exist).
func (t *Table) VIPs() ([]netip.Addr, error) {
	var out []netip.Addr
	err := t.batch("list", func(c *nftables.Conn, tab *nftables.Table) error {
		set, err := c.GetSetByName(tab, "vips")
		if err != nil {
			return nil // no table or no map yet: no VIPs
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			return fmt.Errorf("list vips: %w", err)
		}
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				out = append(out, a)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, err
}

func checkAddrs(vip netip.Addr, backends []netip.Addr) error {
	if !vip.Is4() {
		return fmt.Errorf("lb set %s: VIP is not an IPv4 address", vip)
	}
	for _, b := range backends {
		if !b.Is4() {
			return fmt.Errorf("lb set %s: backend %s is not an IPv4 address", vip, b)
		}
	}
	return nil
}

// sets are the table's two VIP sets: the vmap of the nat chains and the plain
// set of the filter chains.
type sets struct{ vips, known *nftables.Set }

// add queues vip into both sets, its map entry going to ch. Re-adding an
// element with the same data is accepted by the kernel.
func (s sets) add(c *nftables.Conn, vip netip.Addr, ch *nftables.Chain) error {
	el := nftables.SetElement{Key: addr4(vip), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: ch.Name}}
	if err := c.SetAddElements(s.vips, []nftables.SetElement{el}); err != nil {
		return err
	}
	return c.SetAddElements(s.known, []nftables.SetElement{{Key: addr4(vip)}})
}

// skeleton queues the table, its sets and the base chains with their fixed
// rules. Base chains are flushed and refilled so that queuing them again never
// duplicates a rule; the whole batch is atomic, so no packet sees them empty.
func skeleton(c *nftables.Conn, tab *nftables.Table) sets {
	c.AddTable(tab)
	// Existing sets are kept with their elements.
	vips := &nftables.Set{Table: tab, Name: "vips", IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	c.AddSet(vips, nil)
	known := &nftables.Set{Table: tab, Name: "known", KeyType: nftables.TypeIPAddr}
	c.AddSet(known, nil)
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio nftables.ChainPriority, rules ...[]expr.Any) {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: tab, Type: typ, Hooknum: hook, Priority: nftables.ChainPriorityRef(prio)})
		c.FlushChain(ch)
		for _, r := range rules {
			c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: r})
		}
	}
	dispatch := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: vips.Name, SetID: vips.ID},
	}
	base("output", nftables.ChainTypeNAT, nftables.ChainHookOutput, *nftables.ChainPriorityNATDest, dispatch)
	base("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, *nftables.ChainPriorityNATDest, dispatch)
	refuse := refuseRules(known)
	base("refuse-out", nftables.ChainTypeFilter, nftables.ChainHookOutput, *nftables.ChainPriorityFilter, refuse...)
	base("refuse-fwd", nftables.ChainTypeFilter, nftables.ChainHookForward, *nftables.ChainPriorityFilter, refuse...)
	return sets{vips: vips, known: known}
}

// refuseRules reject what is addressed to a VIP and was not translated: a VIP
// without backends. TCP gets a reset (ECONNREFUSED at once), the rest an ICMP
// port unreachable.
func refuseRules(known *nftables.Set) [][]expr.Any {
	untranslated := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: known.Name, SetID: known.ID},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(ipsDstNAT), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0)},
	}
	tcp := append(append([]expr.Any{}, untranslated...),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	)
	other := append(append([]expr.Any{}, untranslated...),
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}, // port unreachable
	)
	return [][]expr.Any{tcp, other}
}

// setVIP queues the VIP's chain, refilled with one DNAT rule over backends,
// and its elements in the sets.
func setVIP(c *nftables.Conn, tab *nftables.Table, s sets, vip netip.Addr, backends []netip.Addr) error {
	ch := c.AddChain(&nftables.Chain{Name: vipChain(vip), Table: tab})
	c.FlushChain(ch)
	if r, err := Spread(c, tab, backends, 0); err != nil {
		return err
	} else if r != nil {
		c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: r})
	}
	return s.add(c, vip, ch)
}

// Spread queues on c the anonymous map of backends and returns the
// expressions of `dnat to numgen random mod N map { i : backend_i }`, with
// `:port` when port is not 0; nil for no backends. Duplicates count once.
func Spread(c *nftables.Conn, tab *nftables.Table, backends []netip.Addr, port uint16) ([]expr.Any, error) {
	uniq := map[netip.Addr]bool{}
	var bs []netip.Addr
	for _, b := range backends {
		if !uniq[b] {
			uniq[b] = true
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return nil, nil
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Less(bs[j]) })
	m := &nftables.Set{Table: tab, Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr}
	elems := make([]nftables.SetElement, len(bs))
	for i, b := range bs {
		// numgen writes its number in host byte order.
		elems[i] = nftables.SetElement{Key: ne32(uint32(i)), Val: addr4(b)}
	}
	if err := c.AddSet(m, elems); err != nil {
		return nil, fmt.Errorf("backend map: %w", err)
	}
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
	r := []expr.Any{
		&expr.Numgen{Register: 1, Modulus: uint32(len(bs)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
		&expr.Counter{},
	}
	if port != 0 {
		p := make([]byte, 2)
		binary.BigEndian.PutUint16(p, port)
		r = append(r, &expr.Immediate{Register: 2, Data: p})
		nat.RegProtoMin, nat.Specified = 2, true
	}
	return append(r, nat), nil
}

func vipChain(vip netip.Addr) string { return "vip-" + vip.String() }

func addr4(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

func ne32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
