// Package peers is the overlay's peer table, learnt over memberlist gossip:
// each node tells the others which endpoints (VNI, IP, MAC) it hosts, and
// every node programs the endpoints of the others, behind their VTEP
// address, into its own VXLAN sandboxes. A node that leaves or is declared
// dead has its endpoints withdrawn everywhere.
//
// A node sends its whole endpoint set (with a version) to every member when
// it changes, over memberlist's reliable (TCP) channel, and memberlist's
// periodic push-pull carries the same set as anti-entropy. Gossip is
// encrypted with the caller's keyring: a node without the key cannot join.
//
// The table is owned by one goroutine; memberlist's callbacks only send it
// events.
package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// DefaultPort is memberlist's (and Docker Swarm's) gossip port.
const DefaultPort = 7946

// Programmer applies the peer table to the node's data path; overlay.Manager
// is one. Errors are logged, not fatal: the next change retries.
type Programmer interface {
	AddPeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error
	RemovePeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error
}

// Endpoint is one endpoint on one overlay network.
type Endpoint struct {
	VNI uint32
	IP  net.IP
	MAC net.HardwareAddr
	// Task is what service discovery needs to know of the endpoint's task
	// (as libnetwork's endpoint_table); zero for an endpoint without one.
	Task TaskInfo
}

// TaskInfo names the task behind an endpoint and its service, for the
// nodes' DNS and VIP load balancing.
type TaskInfo struct {
	// Name is the task's name (web.1.<id>).
	Name string
	// Service and ServiceID are its service's name and ID.
	Service   string
	ServiceID string
	// VIP is the service's virtual IP on this network, unset in DNSRR mode
	// or when it has none.
	VIP net.IP
	// DNSRR is endpoint mode dnsrr: the service name answers with the task
	// addresses instead of the VIP.
	DNSRR bool
	// Aliases are the task's network aliases on this network.
	Aliases []string
	// Serving says the task is RUNNING (and healthy, if it has a health
	// check) and wanted running: only then do names and VIPs lead to it.
	Serving bool
	// Ports are the ports its service publishes through the routing mesh
	// (on the ingress network only): every node opens them and spreads
	// their connections over the serving endpoints that list them.
	Ports []Port
	// Entry marks a node's ingress sandbox, the routing mesh's way in on
	// that node, rather than a task: tasks on the ingress network send the
	// replies of a connection back through the entry it came from.
	Entry bool
}

// Port is a port published through the routing mesh.
type Port struct {
	// Protocol is "tcp" or "udp".
	Protocol string `json:"proto"`
	// Published is the port open on every node; Target the task's.
	Published uint16 `json:"published"`
	Target    uint16 `json:"target"`
}

func (e Endpoint) key() string { return fmt.Sprintf("%d/%s", e.VNI, e.IP) }

// Config is one node's gossip setup.
type Config struct {
	// NodeName is unique in the cluster (the node ID).
	NodeName string
	// BindAddr is the address gossip listens on and advertises; it must be
	// a concrete address (the node's advertise address), not 0.0.0.0.
	BindAddr net.IP
	// Port is the gossip port (TCP and UDP); 0 means DefaultPort.
	Port int
	// VTEP is the node's VXLAN underlay address, announced with its endpoints.
	VTEP net.IP
	// Keys is the gossip keyring (16, 24 or 32 bytes each); Keys[0]
	// encrypts, all decrypt. At least one is required.
	Keys [][]byte
	// Program receives the other nodes' endpoints.
	Program Programmer
	// NetNS, if set, is the network namespace gossip sockets live in (tests
	// run several nodes in one process, one namespace per node).
	NetNS string
	// LocalNetwork uses memberlist's fast timers for a local network (a
	// dead node is noticed in seconds) instead of its LAN defaults.
	LocalNetwork bool
	// LogOutput receives memberlist's log; nil discards it.
	LogOutput io.Writer
	// Changed, if set, is called (on the table's goroutine: it must not
	// block or call back into Peers) after the set of endpoints, local or
	// remote, may have changed; Endpoints gives the new set.
	Changed func()
}

// Peers is a running gossip member.
type Peers struct {
	cfg    Config
	ml     *memberlist.Memberlist
	keys   *memberlist.Keyring
	events chan func(*table)
	sends  chan send
	local  atomic.Pointer[[]byte] // this node's state, encoded, for push-pull
	hello  atomic.Pointer[[]byte] // the same with Hello set, for a node that (re)joins
	logger *log.Logger
	wg     sync.WaitGroup
}

// state is what a node says about itself.
type state struct {
	Node      string      `json:"node"`
	VTEP      string      `json:"vtep"`
	Version   uint64      `json:"version"`
	Endpoints []wireEntry `json:"endpoints"`
	// Hello asks for the receiver's state in return: the sender has just
	// seen the receiver (re)join, and may have dropped its endpoints when
	// it gave it up for dead, while the receiver never gave the sender up.
	Hello bool `json:"hello,omitempty"`
}

type wireEntry struct {
	VNI uint32 `json:"vni"`
	IP  string `json:"ip"`
	MAC string `json:"mac"`
	// Discovery: see TaskInfo. Omitted when empty, so a node without them
	// reads as before.
	Task      string   `json:"task,omitempty"`
	Service   string   `json:"service,omitempty"`
	ServiceID string   `json:"serviceID,omitempty"`
	VIP       string   `json:"vip,omitempty"`
	DNSRR     bool     `json:"dnsrr,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
	Serving   bool     `json:"serving,omitempty"`
	Ports     []Port   `json:"ports,omitempty"`
	Entry     bool     `json:"entry,omitempty"`
}

func toWire(e Endpoint) wireEntry {
	w := wireEntry{VNI: e.VNI, IP: e.IP.String(), MAC: e.MAC.String(), Task: e.Task.Name,
		Service: e.Task.Service, ServiceID: e.Task.ServiceID, DNSRR: e.Task.DNSRR, Aliases: e.Task.Aliases, Serving: e.Task.Serving,
		Ports: e.Task.Ports, Entry: e.Task.Entry}
	if e.Task.VIP != nil {
		w.VIP = e.Task.VIP.String()
	}
	return w
}

type send struct {
	node *memberlist.Node
	msg  []byte
}

// remote is what the table knows of another node.
type remote struct {
	version   uint64
	vtep      net.IP
	endpoints map[string]Endpoint
}

// table is the state owned by the run goroutine.
type table struct {
	p       *Peers
	version uint64
	local   map[string]Endpoint
	remotes map[string]*remote
	// answer sends this node's state to the named node (nil: nobody to
	// answer, in tests of the table alone).
	answer func(node string)
	// member says whether memberlist counts the named node as a live
	// member (nil: every node is, in tests of the table alone).
	member func(node string) bool
}

// pushPullInterval is how often a member exchanges its full state with a
// random other.
const pushPullInterval = 5 * time.Second

// Start creates the memberlist member and the goroutines owning the table;
// they stop when ctx ends (call Leave first for a graceful exit).
func Start(ctx context.Context, cfg Config) (*Peers, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("peers: no node name")
	}
	if cfg.BindAddr == nil || cfg.BindAddr.IsUnspecified() {
		return nil, errors.New("peers: gossip needs a concrete bind address")
	}
	if cfg.VTEP.To4() == nil {
		return nil, fmt.Errorf("peers: VTEP address %q is not IPv4", cfg.VTEP)
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("peers: no gossip key (gossip is never sent in clear)")
	}
	if cfg.Program == nil {
		return nil, errors.New("peers: no programmer")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
	if err != nil {
		return nil, fmt.Errorf("peers: keyring: %w", err)
	}
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	p := &Peers{
		cfg:    cfg,
		keys:   kr,
		events: make(chan func(*table), 64),
		sends:  make(chan send, 256),
		logger: log.New(out, "peers: ", log.LstdFlags),
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.LocalNetwork {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = cfg.NodeName
	// The push-pull is the anti-entropy under the per-change messages: a
	// state message lost (a send that failed, a full queue) is made good
	// at the next one with that node. memberlist's LAN default of 30 s let
	// a new task stay out of another node's VIP for longer than that
	// (TestClusterDiscovery, 2 of 7 runs); the full state of a node is its
	// own endpoints, small enough to exchange every few seconds (memberlist
	// stretches the interval for clusters over 32 nodes).
	mc.PushPullInterval = pushPullInterval
	mc.BindAddr = cfg.BindAddr.String()
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = cfg.BindAddr.String()
	mc.AdvertisePort = cfg.Port
	mc.Keyring = kr
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Logger = p.logger
	mc.Delegate = &delegate{p: p, ctx: ctx}
	mc.Events = &delegate{p: p, ctx: ctx}
	if cfg.NetNS != "" {
		var nt *memberlist.NetTransport
		err := sandbox.Do(cfg.NetNS, func() error {
			var err error
			nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
				BindAddrs: []string{mc.BindAddr}, BindPort: cfg.Port, Logger: p.logger,
			})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("peers: listen in %s: %w", cfg.NetNS, err)
		}
		mc.Transport = &nsTransport{NetTransport: nt, netns: cfg.NetNS}
	}
	t := &table{p: p, local: map[string]Endpoint{}, remotes: map[string]*remote{}, version: uint64(time.Now().UnixNano())}
	t.answer = func(node string) {
		for _, m := range p.ml.Members() {
			if m.Name == node {
				p.queue(m, *p.local.Load())
			}
		}
	}
	t.member = func(node string) bool {
		for _, m := range p.ml.Members() {
			if m.Name == node {
				return true
			}
		}
		return false
	}
	t.publish()
	ml, err := memberlist.Create(mc)
	if err != nil {
		if mc.Transport != nil {
			mc.Transport.Shutdown()
		}
		return nil, fmt.Errorf("peers: start gossip on %s:%d: %w", cfg.BindAddr, cfg.Port, err)
	}
	p.ml = ml
	p.wg.Add(2)
	go p.run(ctx, t)
	go p.sender(ctx)
	go func() {
		<-ctx.Done()
		p.wg.Wait()
		ml.Shutdown()
	}()
	return p, nil
}

// Join contacts existing members (host:port or host, the port defaulting to
// the configured one). It fails if none could be joined, which is what a
// node without the cluster's key gets.
func (p *Peers) Join(addrs []string) error {
	full := make([]string, len(addrs))
	for i, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, strconv.Itoa(p.cfg.Port))
		}
		full[i] = a
	}
	if _, err := p.ml.Join(full); err != nil {
		return fmt.Errorf("peers: join %v: %w", full, err)
	}
	return nil
}

// Members returns the names of the live members, this node included.
func (p *Peers) Members() []string {
	var names []string
	for _, m := range p.ml.Members() {
		names = append(names, m.Name)
	}
	return names
}

// Missing returns the hosts among hosts that are not live members as this
// node sees them: given up for dead, or never joined.
func (p *Peers) Missing(hosts []string) []string {
	live := map[string]bool{}
	for _, m := range p.ml.Members() {
		live[m.Addr.String()] = true
	}
	var out []string
	for _, h := range hosts {
		if !live[h] {
			out = append(out, h)
		}
	}
	return out
}

// Leave tells the others this node is going (they withdraw its endpoints at
// once instead of waiting to declare it dead).
func (p *Peers) Leave(timeout time.Duration) error {
	if err := p.ml.Leave(timeout); err != nil {
		return fmt.Errorf("peers: leave: %w", err)
	}
	return nil
}

// SetKeys replaces the gossip keyring: keys[0] encrypts from now on, every
// one of keys decrypts, other keys are dropped. A rotation without a gap
// adds the new key everywhere first (as a second key), then makes it the
// first, then drops the old one. Bad keys change nothing.
func (p *Peers) SetKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("peers: no gossip key")
	}
	for _, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("peers: gossip key: %w", err)
		}
	}
	for _, k := range keys {
		if err := p.keys.AddKey(k); err != nil {
			return fmt.Errorf("peers: add gossip key: %w", err)
		}
	}
	if err := p.keys.UseKey(keys[0]); err != nil {
		return fmt.Errorf("peers: use gossip key: %w", err)
	}
	// A copy: RemoveKey edits the slice GetKeys returns in place.
	for _, old := range slices.Clone(p.keys.GetKeys()) {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := p.keys.RemoveKey(old); err != nil {
				return fmt.Errorf("peers: drop gossip key: %w", err)
			}
		}
	}
	return nil
}

// Shutdown stops gossip at once, as a crash would (no leave message).
func (p *Peers) Shutdown() error { return p.ml.Shutdown() }

// Announce publishes a local endpoint and programs the known remote
// endpoints of its network (the network's sandbox may be new).
func (p *Peers) Announce(ctx context.Context, e Endpoint) error {
	return p.do(ctx, func(t *table) { t.announce(e) })
}

// Withdraw stops publishing a local endpoint.
func (p *Peers) Withdraw(ctx context.Context, e Endpoint) error {
	return p.do(ctx, func(t *table) { t.withdraw(e) })
}

// do runs fn on the table's goroutine and waits for it.
func (p *Peers) do(ctx context.Context, fn func(*table)) error {
	done := make(chan struct{})
	select {
	case p.events <- func(t *table) { fn(t); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Peers) run(ctx context.Context, t *table) {
	defer p.wg.Done()
	for {
		select {
		case fn := <-p.events:
			fn(t)
		case <-ctx.Done():
			return
		}
	}
}

// sender delivers state messages so that a slow or dead member never
// blocks the table.
func (p *Peers) sender(ctx context.Context) {
	defer p.wg.Done()
	for {
		select {
		case s := <-p.sends:
			if err := p.ml.SendReliable(s.node, s.msg); err != nil {
				p.logger.Printf("[WARN] send state to %s (it catches up at a push-pull): %v", s.node.Name, err)
			}
		case <-ctx.Done():
			return
		}
	}
}

func (t *table) announce(e Endpoint) {
	t.local[e.key()] = e
	t.changed()
	defer t.notify()
	for name, r := range t.remotes {
		for _, re := range r.endpoints {
			if re.VNI == e.VNI {
				t.program(name, r.vtep, re, true)
			}
		}
	}
}

func (t *table) withdraw(e Endpoint) {
	cur, ok := t.local[e.key()]
	// The address may be another task's by now: the allocator frees a
	// task's address once the task has ended in the store, which can be
	// before its node has torn it down, and gives it to a new task, here
	// too. Only the task that announced it withdraws it.
	if !ok || (e.Task.Name != "" && cur.Task.Name != "" && cur.Task.Name != e.Task.Name) {
		return
	}
	delete(t.local, e.key())
	t.changed()
	t.notify()
}

// changed bumps the version, republishes and pushes the new set to every
// other member.
func (t *table) changed() {
	t.version++
	msg := t.publish()
	for _, m := range t.p.ml.Members() {
		if m.Name == t.p.cfg.NodeName {
			continue
		}
		t.p.queue(m, msg)
	}
}

func (p *Peers) queue(m *memberlist.Node, msg []byte) {
	select {
	case p.sends <- send{node: m, msg: msg}:
	default:
		// The queue is full of states that are already stale; push-pull
		// catches up.
		p.logger.Printf("[WARN] state queue full, %s catches up on push-pull", m.Name)
	}
}

func (t *table) publish() []byte {
	s := state{Node: t.p.cfg.NodeName, VTEP: t.p.cfg.VTEP.String(), Version: t.version}
	for _, e := range t.local {
		s.Endpoints = append(s.Endpoints, toWire(e))
	}
	b, _ := json.Marshal(s) // plain strings and numbers: cannot fail
	s.Hello = true
	h, _ := json.Marshal(s)
	t.p.local.Store(&b)
	t.p.hello.Store(&h)
	return b
}

func (t *table) hasLocal(vni uint32) bool {
	for _, e := range t.local {
		if e.VNI == vni {
			return true
		}
	}
	return false
}

func (t *table) program(node string, vtep net.IP, e Endpoint, add bool) {
	if !t.hasLocal(e.VNI) {
		return // no sandbox here for that network
	}
	var err error
	if add {
		err = t.p.cfg.Program.AddPeer(e.VNI, e.IP, e.MAC, vtep)
	} else {
		err = t.p.cfg.Program.RemovePeer(e.VNI, e.IP, e.MAC, vtep)
	}
	if err != nil {
		t.p.logger.Printf("[WARN] program endpoint %s of %s: %v", e.key(), node, err)
	}
}

// merge applies another node's state, if newer than what the table has.
func (t *table) merge(buf []byte) {
	var s state
	if err := json.Unmarshal(buf, &s); err != nil {
		t.p.logger.Printf("[WARN] bad peer state: %v", err)
		return
	}
	if s.Node == "" || s.Node == t.p.cfg.NodeName {
		return
	}
	if t.member != nil && !t.member(s.Node) {
		// A state that was on its way when its node left (a push-pull
		// answer, a reliable send in flight) is merged after the leave:
		// taken, it would bring the node's endpoints back for good, since
		// nothing withdraws them again (TestClusterOverlay, once in make
		// test). memberlist marks a node alive before it hands over the
		// node's state, so a joining node's first state is not lost.
		return
	}
	vtep := net.ParseIP(s.VTEP)
	if vtep.To4() == nil {
		t.p.logger.Printf("[WARN] state of %s: bad VTEP %q", s.Node, s.VTEP)
		return
	}
	next := map[string]Endpoint{}
	for _, w := range s.Endpoints {
		ip := net.ParseIP(w.IP)
		mac, err := net.ParseMAC(w.MAC)
		if ip.To4() == nil || err != nil {
			t.p.logger.Printf("[WARN] state of %s: bad endpoint %v", s.Node, w)
			continue
		}
		e := Endpoint{VNI: w.VNI, IP: ip, MAC: mac, Task: TaskInfo{Name: w.Task, Service: w.Service,
			ServiceID: w.ServiceID, VIP: net.ParseIP(w.VIP).To4(), DNSRR: w.DNSRR, Aliases: w.Aliases, Serving: w.Serving,
			Ports: w.Ports, Entry: w.Entry}}
		next[e.key()] = e
	}
	old := t.remotes[s.Node]
	if (old == nil || s.Hello) && t.answer != nil {
		// A node heard of for the first time, or again after it was
		// given up for dead (it may have given this one up too: a
		// partition, seen from both sides), or one that says it has just
		// seen this one (re)join: without an answer it would learn this
		// node's endpoints only at a push-pull between the two, which
		// memberlist makes with one random member every 30 s (a healed
		// partition took 42-60 s to carry traffic again).
		defer t.answer(s.Node)
	}
	if old != nil && old.version >= s.Version {
		return
	}
	t.remotes[s.Node] = &remote{version: s.Version, vtep: vtep, endpoints: next}
	if old != nil {
		for k, e := range old.endpoints {
			if n, ok := next[k]; !ok || n.MAC.String() != e.MAC.String() || !old.vtep.Equal(vtep) {
				t.unprogram(s.Node, old.vtep, e)
			}
		}
	}
	for _, e := range next {
		t.program(s.Node, vtep, e, true)
	}
	t.notify()
}

// notify tells the Changed callback.
func (t *table) notify() {
	if t.p.cfg.Changed != nil {
		t.p.cfg.Changed()
	}
}

// Endpoints returns every endpoint the node knows, its own and the other
// nodes', on the networks of vnis (all networks if vnis is empty). An
// address claimed by two nodes (news out of order) is listed once.
func (p *Peers) Endpoints(ctx context.Context, vnis ...uint32) ([]Endpoint, error) {
	var out []Endpoint
	err := p.do(ctx, func(t *table) { out = t.endpoints(vnis) })
	return out, err
}

func (t *table) endpoints(vnis []uint32) []Endpoint {
	seen := map[string]bool{}
	var out []Endpoint
	add := func(e Endpoint) {
		if (len(vnis) == 0 || slices.Contains(vnis, e.VNI)) && !seen[e.key()] {
			seen[e.key()] = true
			out = append(out, e)
		}
	}
	for _, e := range t.local {
		add(e)
	}
	for _, r := range t.remotes {
		for _, e := range r.endpoints {
			add(e)
		}
	}
	return out
}

// unprogram withdraws a node's endpoint, unless another node now claims
// the same address (the allocator gave it to a task elsewhere and the two
// nodes' news arrived out of order): that claim is programmed instead, so
// the late withdrawal does not cut the new endpoint off.
func (t *table) unprogram(node string, vtep net.IP, e Endpoint) {
	for name, r := range t.remotes {
		if name == node {
			continue
		}
		if o, ok := r.endpoints[e.key()]; ok {
			t.program(name, r.vtep, o, true)
			return
		}
	}
	t.program(node, vtep, e, false)
}

// gone withdraws every endpoint of a node that left or died.
func (t *table) gone(node string) {
	r := t.remotes[node]
	if r == nil {
		return
	}
	delete(t.remotes, node)
	for _, e := range r.endpoints {
		t.unprogram(node, r.vtep, e)
	}
	t.notify()
}

// delegate turns memberlist's callbacks into table events.
type delegate struct {
	p   *Peers
	ctx context.Context
}

func (d *delegate) post(fn func(*table)) {
	select {
	case d.p.events <- fn:
	case <-d.ctx.Done():
	}
}

func (d *delegate) NodeMeta(limit int) []byte { return nil }

func (d *delegate) NotifyMsg(b []byte) {
	buf := append([]byte(nil), b...) // memberlist reuses b
	d.post(func(t *table) { t.merge(buf) })
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

func (d *delegate) LocalState(join bool) []byte { return *d.p.local.Load() }

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	b := append([]byte(nil), buf...)
	d.post(func(t *table) { t.merge(b) })
}

// NotifyJoin sends the newcomer this node's state at once rather than at
// the next push-pull.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	if n.Name == d.p.cfg.NodeName {
		return
	}
	node := *n
	d.p.queue(&node, *d.p.hello.Load())
}

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	name := n.Name
	d.post(func(t *table) { t.gone(name) })
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {}

// nsTransport is memberlist's network transport with its outgoing TCP
// connections dialled from a given network namespace (its listeners were
// created there already).
type nsTransport struct {
	*memberlist.NetTransport
	netns string
}

func (t *nsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := sandbox.Do(t.netns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

func (t *nsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}
