package encrypt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

var (
	nodeA = netip.MustParseAddr("198.18.0.1")
	nodeB = netip.MustParseAddr("198.18.0.2")
	nodeC = netip.MustParseAddr("198.18.0.3")
)

// innerPacket is what the TUN device gives: a virtio-net header without
// offload and an IPv4 packet from src to dst with payload.
func innerPacket(src, dst netip.Addr, payload string) []byte {
	p := make([]byte, vnetHdrLen+20+len(payload))
	ip := p[vnetHdrLen:]
	ip[0] = 0x45
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	copy(ip[20:], payload)
	return p
}

// sealed is inner sealed by s with sequence number seq.
func sealed(s *sa, inner []byte, seq uint64) []byte {
	buf := make([]byte, headerLen+len(inner)+maxOverhead)
	copy(buf[headerLen:], inner)
	return bytes.Clone(s.seal(buf, len(inner), seq))
}

func mustSA(t *testing.T, key []byte, sender netip.Addr, spi uint32) *sa {
	t.Helper()
	s, err := newSA(key, sender, spi)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealOpen: every padding length round-trips; a change to any byte, a
// key derived for another sender or SPI, or another network key is refused.
func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeySize)
	s := mustSA(t, key, nodeA, 0x1234)
	for n := 20; n < 28; n++ {
		inner := innerPacket(nodeA, nodeB, strings.Repeat("x", n-20))
		pkt := sealed(s, inner, 77)
		if (len(pkt)-headerLen-icvLen)%4 != 0 {
			t.Fatalf("%d bytes: ciphertext of %d bytes is not 4-aligned", n, len(pkt)-headerLen-icvLen)
		}
		if bytes.Contains(pkt, inner[vnetHdrLen+20:]) && n > 22 {
			t.Fatalf("%d bytes: payload in the clear", n)
		}
		spi, seq, err := espHeader(pkt)
		if err != nil || spi != 0x1234 || seq != 77 {
			t.Fatalf("header %x %d %v", spi, seq, err)
		}
		got, err := mustSA(t, key, nodeA, 0x1234).open(pkt, seq)
		if err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%d bytes: open %v, %x want %x", n, err, got, inner)
		}
	}
	inner := innerPacket(nodeA, nodeB, "SHOAL-MARKER")
	good := sealed(s, inner, 1<<40+5)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x20
		spi, seq, err := espHeader(bad)
		if err != nil {
			continue // the two copies of the sequence number disagree
		}
		if _, err := mustSA(t, key, nodeA, spi).open(bad, seq); err == nil {
			t.Fatalf("a flipped bit at %d of %d opened", i, len(good))
		}
	}
	other := bytes.Repeat([]byte{2}, KeySize)
	for name, o := range map[string]*sa{
		"another sender":      mustSA(t, key, nodeC, 0x1234),
		"another SPI":         mustSA(t, key, nodeA, 0x1235),
		"another network key": mustSA(t, other, nodeA, 0x1234),
	} {
		if _, err := o.open(bytes.Clone(good), 1<<40+5); err == nil {
			t.Fatalf("%s opened the packet", name)
		}
	}
	if _, _, err := espHeader(good[:headerLen+icvLen]); err == nil {
		t.Fatal("a packet without a trailer passed")
	}
}

// TestReplayWindow: a sequence number is taken once; late ones within the
// window are taken, older ones not, and the word a jump reuses is cleared.
func TestReplayWindow(t *testing.T) {
	var w replayWindow
	take := func(seq uint64) bool {
		if !w.check(seq) {
			return false
		}
		w.accept(seq)
		return true
	}
	base := uint64(time.Now().UnixNano())
	for _, c := range []struct {
		seq  uint64
		want bool
	}{
		{base, true}, {base, false}, {base + 2, true}, {base + 1, true}, {base + 1, false},
		{base + 100, true}, {base + 3, true}, {base + 3, false},
		{base + 4200, true}, {base + 100, false}, // now older than the window
		{base + 4200 - 64, true}, {base + 4200 - 64, false},
		{base + 4200 - windowSize + 63, false}, // the word the next top reuses
		{base + 1_000_000, true}, {base + 4200 - 64, false}, {base + 1_000_000 - 1, true},
	} {
		if got := take(c.seq); got != c.want {
			t.Fatalf("seq base+%d: taken %v, want %v", c.seq-base, got, c.want)
		}
	}
}

// testTunnel is a Tunnel at local with peers and key, without devices: for
// the receiving checks.
func testTunnel(local netip.Addr, key []byte, peers ...netip.Addr) *Tunnel {
	t := &Tunnel{vni: 4096, local: local.As4()}
	st := &state{key: key, peers: map[[4]byte]bool{}}
	for _, p := range peers {
		st.peers[p.As4()] = true
	}
	t.st.Store(st)
	return t
}

// TestReceiveChecks: B takes A's packets once; not from an address that is
// not a peer, not an inner packet that poses as another node, not a replay,
// not under a key B does not hold; after a rotation the old key opens only
// for a while.
func TestReceiveChecks(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeySize)
	b := testTunnel(nodeB, key, nodeA)
	rx := map[[4]byte]*peerRx{}
	a := mustSA(t, key, nodeA, 0x5000)
	seq := uint64(time.Now().UnixNano())
	next := func() uint64 { seq++; return seq }
	receive := func(from netip.Addr, pkt []byte) bool {
		_, ok := b.open(rx, from, pkt)
		return ok
	}
	msg := innerPacket(nodeA, nodeB, "hello")
	p1 := sealed(a, msg, next())
	if !receive(nodeA, bytes.Clone(p1)) {
		t.Fatal("a peer's packet refused")
	}
	if receive(nodeA, bytes.Clone(p1)) {
		t.Fatal("a replayed packet taken")
	}
	if receive(nodeC, sealed(mustSA(t, key, nodeC, 0x5001), innerPacket(nodeC, nodeB, "x"), next())) {
		t.Fatal("a packet from a node that is not a peer taken")
	}
	if receive(nodeA, sealed(a, innerPacket(nodeC, nodeB, "posing"), next())) {
		t.Fatal("an inner packet from another node's address taken")
	}
	if receive(nodeA, sealed(a, innerPacket(nodeA, nodeC, "elsewhere"), next())) {
		t.Fatal("an inner packet for another node taken")
	}
	gso := innerPacket(nodeA, nodeB, "segment me")
	gso[vnetGSOOffset] = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	if receive(nodeA, sealed(a, gso, next())) {
		t.Fatal("a header asking for segmentation taken")
	}
	csum := innerPacket(nodeA, nodeB, "sum me")
	csum[vnetFlagsOffset] = vnetNeedsCsum
	binary.NativeEndian.PutUint16(csum[vnetCsumStartOff:], 20)
	binary.NativeEndian.PutUint16(csum[vnetCsumOffOff:], 4)
	if !receive(nodeA, sealed(a, csum, next())) {
		t.Fatal("a header with a checksum to complete inside the packet refused")
	}
	binary.NativeEndian.PutUint16(csum[vnetCsumStartOff:], 100)
	if receive(nodeA, sealed(a, csum, next())) {
		t.Fatal("a checksum to complete past the packet's end taken")
	}
	other := bytes.Repeat([]byte{9}, KeySize)
	time.Sleep(deriveEvery)
	if receive(nodeA, sealed(mustSA(t, other, nodeA, 0x5002), msg, next())) {
		t.Fatal("a packet under a key B does not hold taken")
	}

	// Rotation: B holds the new key; A's packets under the new key and,
	// for a while, the old one are taken.
	newKey := bytes.Repeat([]byte{3}, KeySize)
	now := time.Now()
	b.st.Store(&state{key: newKey, prev: key, prevUntil: now.Add(time.Hour), peers: b.st.Load().peers})
	a2 := mustSA(t, newKey, nodeA, 0x6000)
	time.Sleep(deriveEvery)
	if !receive(nodeA, sealed(a2, msg, next())) {
		t.Fatal("a packet under the new key refused")
	}
	if !receive(nodeA, sealed(a, msg, next())) {
		t.Fatal("a packet under the previous key refused during the overlap")
	}
	b.st.Store(&state{key: newKey, prev: key, prevUntil: now.Add(-time.Second), peers: b.st.Load().peers})
	if receive(nodeA, sealed(a, msg, next())) {
		t.Fatal("a packet under the previous key taken after the overlap")
	}
	if !receive(nodeA, sealed(a2, msg, next())) {
		t.Fatal("the new key's packets refused after the overlap")
	}
	// A restarted A: a new SPI, sequence numbers from its clock.
	a3 := mustSA(t, newKey, nodeA, 0x7000)
	time.Sleep(deriveEvery)
	if !receive(nodeA, sealed(a3, msg, uint64(time.Now().UnixNano()))) {
		t.Fatal("a restarted sender's packets refused")
	}
}

// TestSealerSwitch: a new key seals only after txSwitchDelay.
func TestSealerSwitch(t *testing.T) {
	old, nw := &sa{spi: 1}, &sa{spi: 2}
	now := time.Now()
	s := &state{tx: old, next: nw, switchAt: now.Add(txSwitchDelay)}
	if s.sealer(now) != old || s.sealer(now.Add(txSwitchDelay)) != nw {
		t.Fatal("the sealing SA does not switch at switchAt")
	}
}

// TestNetworkKey: a key per network and per cluster key, stable.
func TestNetworkKey(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)
	if bytes.Equal(NetworkKey(k1, 4096), NetworkKey(k1, 4097)) || bytes.Equal(NetworkKey(k1, 4096), NetworkKey(k2, 4096)) {
		t.Fatal("network keys shared")
	}
	if !bytes.Equal(NetworkKey(k1, 4096), NetworkKey(k1, 4096)) || len(NetworkKey(k1, 4096)) != KeySize {
		t.Fatal("network key not stable")
	}
	if Port(4096) != BasePort || Port(4097) != BasePort+1 {
		t.Fatalf("ports %d %d", Port(4096), Port(4097))
	}
}

// TestOpenRefusesBadInput: a short key or an IPv6 address is refused before
// anything is made.
func TestOpenRefusesBadInput(t *testing.T) {
	if _, err := Open("/nonexistent", 4096, net.ParseIP("198.18.0.1"), 1400, 1500, []byte("short")); err == nil || !strings.Contains(err.Error(), "network key") {
		t.Fatalf("short key: %v", err)
	}
	if _, err := Open("/nonexistent", 4096, net.ParseIP("2001:db8::1"), 1400, 1500, make([]byte, KeySize)); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Fatalf("IPv6 address: %v", err)
	}
}

// TestChunksOverLoopback: a packet far above the link's MTU leaves in one
// send with segmentation offload and comes back whole from the chunks; a
// missing chunk leaves nothing, and a chunk that disagrees with its
// packet's header is refused.
func TestChunksOverLoopback(t *testing.T) {
	stop, rfd, sfd, to := loopbackPair(t)
	const maxPacket = 40000
	pkt := make([]byte, 30001)
	for i := range pkt {
		pkt[i] = byte(i * 7)
	}
	c := newChunker(1500, maxPacket)
	gso := true
	if err := c.send(sfd, stop, pkt, 42, to, &gso); err != nil {
		t.Fatal(err)
	}
	if !gso {
		t.Fatal("the kernel refused UDP segmentation offload on loopback")
	}
	buf, oob := make([]byte, 1<<16), make([]byte, 64)
	n, oobn, _, err := new(msgIO).recv(rfd, stop, [][]byte{buf}, oob)
	if err != nil {
		t.Fatal(err)
	}
	seg := groSize(oob[:oobn])
	if seg != chunkHeaderLen+chunkSize(1500) || n <= seg {
		t.Fatalf("one receive of %d bytes, segment %d: the chunks were not coalesced", n, seg)
	}
	var r reassembly
	var bufs buffers
	var got []byte
	for data := buf[:n]; len(data) > 0; data = data[min(seg, len(data)):] {
		if p, seq, done := r.add(data[:min(seg, len(data))], maxPacket, &bufs); done {
			if seq != 42 {
				t.Fatalf("sequence %d", seq)
			}
			got = bytes.Clone(p)
		}
	}
	if !bytes.Equal(got, pkt) {
		t.Fatalf("reassembled %d bytes, want the %d sent", len(got), len(pkt))
	}

	iov, total, seg := c.cut(pkt, 43)
	out := bytes.Join(iov, nil)
	if len(out) != total {
		t.Fatalf("cut says %d bytes, holds %d", total, len(out))
	}
	var chunks [][]byte
	for data := out; len(data) > 0; data = data[min(seg, len(data)):] {
		chunks = append(chunks, bytes.Clone(data[:min(seg, len(data))]))
	}
	var r2 reassembly
	for i, ch := range chunks {
		if i == 3 {
			continue
		}
		if _, _, done := r2.add(ch, maxPacket, &bufs); done {
			t.Fatal("a packet with a chunk missing was completed")
		}
	}
	bad := bytes.Clone(chunks[3])
	bad[2]++ // another count than the packet's
	if _, _, done := r2.add(bad, maxPacket, &bufs); done {
		t.Fatal("a chunk disagreeing with its packet completed it")
	}
	if p, _, done := r2.add(chunks[3], maxPacket, &bufs); !done || !bytes.Equal(p, pkt) {
		t.Fatal("the missing chunk, arriving late, did not complete the packet")
	}
	huge := bytes.Clone(chunks[0])
	huge[2] = maxChunks + 1
	if _, _, done := (&reassembly{}).add(huge, maxPacket, &bufs); done {
		t.Fatal("a chunk claiming too many chunks taken")
	}
}

// TestHostileDatagrams: random bytes, random chunk headers and truncated or
// re-cut real packets from a peer's address never panic and never reach the
// TUN device; the genuine packet, sent after them, still does.
func TestHostileDatagrams(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeySize)
	b := testTunnel(nodeB, key, nodeA)
	rx := map[[4]byte]*peerRx{}
	var r reassembly
	var bufs buffers
	const maxPacket = headerLen + vnetHdrLen + 2000 + maxOverhead
	a := mustSA(t, key, nodeA, 0x5000)
	seq := uint64(time.Now().UnixNano())
	genuine := sealed(a, innerPacket(nodeA, nodeB, strings.Repeat("g", 1500)), seq)
	c := newChunker(600, maxPacket)
	iov, _, _ := c.cut(genuine, seq)
	var real [][]byte
	for i := 0; i < len(iov); i += 2 {
		real = append(real, bytes.Join(iov[i:i+2], nil))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	taken := 0
	try := func(d []byte) {
		if pkt, _, done := r.add(d, maxPacket, &bufs); done {
			if _, ok := b.open(rx, nodeA, pkt); ok {
				taken++
			}
		}
	}
	for i := range 200000 {
		var d []byte
		switch i % 4 {
		case 0: // noise
			d = make([]byte, rng.IntN(1600))
			for j := range d {
				d[j] = byte(rng.Uint32())
			}
		case 1: // a plausible chunk header over noise
			d = make([]byte, chunkHeaderLen+rng.IntN(700))
			for j := range d {
				d[j] = byte(rng.Uint32())
			}
			d[0], d[2] = chunkVersion, byte(1+rng.IntN(maxChunks+2))
			d[1] = byte(rng.IntN(int(d[2]) + 1))
			binary.BigEndian.PutUint16(d[4:6], uint16(rng.IntN(2000)))
		case 2: // a real chunk, truncated or with a byte changed
			d = bytes.Clone(real[rng.IntN(len(real))])
			if rng.IntN(2) == 0 {
				d = d[:rng.IntN(len(d))]
			} else {
				d[rng.IntN(len(d))] ^= byte(1 + rng.IntN(255))
			}
		case 3: // a whole sealed packet, changed, in one datagram
			d = bytes.Clone(genuine)
			d[rng.IntN(len(d))] ^= byte(1 + rng.IntN(255))
			d = append(make([]byte, chunkHeaderLen), d...)
			d[0], d[1], d[2] = chunkVersion, 0, 1
			binary.BigEndian.PutUint16(d[4:6], uint16(len(d)))
		}
		try(d)
	}
	if taken != 0 {
		t.Fatalf("%d forged or damaged packets reached the TUN device", taken)
	}
	time.Sleep(deriveEvery)
	for _, ch := range real {
		try(ch)
	}
	if taken != 1 {
		t.Fatal("the genuine packet, after the noise, was not taken")
	}
}

// TestDeletedDeviceDoesNotSpin: a TUN device deleted under a running tunnel
// (its reads then fail at once) does not set its loop spinning, and Close
// still ends both loops.
func TestDeletedDeviceDoesNotSpin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces)")
	}
	path := filepath.Join(t.TempDir(), "sb")
	if err := sandbox.Create(path); err != nil {
		t.Fatal(err)
	}
	defer sandbox.Remove(path)
	tun, err := Open(path, 4093, net.ParseIP("198.18.200.1"), 1400, 1500, bytes.Repeat([]byte{1}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			go tun.Close() // a spinning loop would never let it return
		}
	}()
	h, err := sandbox.Handle(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(LinkName)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	cpu := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := cpu()
	time.Sleep(time.Second)
	if used := cpu() - before; used > 300*time.Millisecond {
		t.Fatalf("%v of CPU in the second after the device went: a loop spins", used)
	}
	done := make(chan struct{})
	go func() { tun.Close(); close(done) }()
	select {
	case <-done:
		closed = true
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the loops")
	}
	tun.Close() // a second Close changes nothing
}

// TestBuffersFollowPackets: a hundred peers each sending a packet one after
// the other hold one packet buffer between them, not one each.
func TestBuffersFollowPackets(t *testing.T) {
	const maxPacket = 8000
	c := newChunker(1500, maxPacket)
	pkt := bytes.Repeat([]byte{7}, 5000)
	iov, _, seg := c.cut(pkt, 1)
	out := bytes.Join(iov, nil)
	peers := make([]reassembly, 100)
	var bufs buffers
	for i := range peers {
		completed := false
		for data := out; len(data) > 0; data = data[min(seg, len(data)):] {
			if p, _, done := peers[i].add(data[:min(seg, len(data))], maxPacket, &bufs); done {
				completed = bytes.Equal(p, pkt)
			}
		}
		if !completed {
			t.Fatalf("peer %d: packet not completed", i)
		}
	}
	held := len(bufs.free)
	for i := range peers {
		for _, s := range peers[i].slots {
			if s.buf != nil {
				held++
			}
		}
	}
	if held != 1 {
		t.Fatalf("%d packet buffers held after 100 peers' packets, want 1", held)
	}
}

// TestScatterOverLoopback: a packet sent whole with this node's chunk size
// is received contiguous without reassembly; one cut to another size is
// not taken as whole and comes back through the flattened bytes.
func TestScatterOverLoopback(t *testing.T) {
	stop, rfd, sfd, to := loopbackPair(t)
	const maxPacket = 64100
	pkt := make([]byte, 50001)
	for i := range pkt {
		pkt[i] = byte(i * 13)
	}
	sc := newScatter(chunkSizeFor(1500, maxPacket))
	oob := make([]byte, 64)
	for _, mtu := range []int{1500, 1400, 9000} {
		gso := true
		if err := newChunker(mtu, maxPacket).send(sfd, stop, pkt, 9, to, &gso); err != nil {
			t.Fatal(err)
		}
		n, oobn, _, err := new(msgIO).recv(rfd, stop, sc.iov, oob)
		if err != nil {
			t.Fatal(err)
		}
		seg := groSize(oob[:oobn])
		got, seq, whole := sc.whole(n, seg)
		if whole != (mtu == 1500) {
			t.Fatalf("sender MTU %d: taken whole %v", mtu, whole)
		}
		if whole {
			if seq != 9 || !bytes.Equal(got, pkt) {
				t.Fatalf("sender MTU %d: whole packet differs (seq %d, %d bytes)", mtu, seq, len(got))
			}
			continue
		}
		var r reassembly
		var bufs buffers
		if seg <= 0 {
			seg = n
		}
		got = nil
		for data := sc.flatten(n); len(data) > 0; data = data[min(seg, len(data)):] {
			if p, _, done := r.add(data[:min(seg, len(data))], maxPacket, &bufs); done {
				got = bytes.Clone(p)
			}
		}
		if !bytes.Equal(got, pkt) {
			t.Fatalf("sender MTU %d: reassembled %d bytes, want %d", mtu, len(got), len(pkt))
		}
	}
}

// TestPacketPathAllocatesNothing: a packet's send in chunks, its coalesced
// receive and the reading of its segment size allocate nothing (at 10,000
// packets a second per loop, garbage meant collector work on the path).
func TestPacketPathAllocatesNothing(t *testing.T) {
	stop, rfd, sfd, to := loopbackPair(t)
	const maxPacket = 64100
	pkt := make([]byte, 50001)
	sc := newScatter(chunkSizeFor(1500, maxPacket))
	c := newChunker(1500, maxPacket)
	msg := new(msgIO)
	oob := make([]byte, 64)
	gso := true
	var failed error
	allocs := testing.AllocsPerRun(50, func() {
		if err := c.send(sfd, stop, pkt, 9, to, &gso); err != nil {
			failed = err
			return
		}
		n, oobn, _, err := msg.recv(rfd, stop, sc.iov, oob)
		if err != nil {
			failed = err
			return
		}
		if _, _, whole := sc.whole(n, groSize(oob[:oobn])); !whole {
			failed = fmt.Errorf("%d bytes received, not taken whole", n)
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet sent and received, want 0", allocs)
	}
}

// TestTrafficWhileRekeyed: two tunnels on two hosts (namespaces joined by a
// veth) carry datagrams from one sandbox to the other while both take new
// keys and peers come and go beside them; every key change keeps the path
// (run under the race detector by make test).
func TestTrafficWhileRekeyed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces)")
	}
	dir := t.TempDir()
	ips := []net.IP{net.IPv4(198, 18, 201, 1).To4(), net.IPv4(198, 18, 201, 2).To4()}
	var hosts, sbs []string
	for i := range 2 {
		h, sb := filepath.Join(dir, fmt.Sprintf("host%d", i)), filepath.Join(dir, fmt.Sprintf("sb%d", i))
		for _, p := range []string{h, sb} {
			if err := sandbox.Create(p); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sandbox.Remove(p) })
		}
		hosts, sbs = append(hosts, h), append(sbs, sb)
	}
	// A veth between the two hosts' namespaces, addressed.
	h0, err := sandbox.Handle(hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer h0.Close()
	la := netlink.NewLinkAttrs()
	la.Name = "u0"
	if err := h0.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "u1"}); err != nil {
		t.Fatal(err)
	}
	h1, err := sandbox.Handle(hosts[1])
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	ns1, err := netns.GetFromPath(hosts[1])
	if err != nil {
		t.Fatal(err)
	}
	peerEnd, err := h0.LinkByName("u1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h0.LinkSetNsFd(peerEnd, int(ns1)); err != nil {
		t.Fatal(err)
	}
	ns1.Close()
	for i, h := range []*netlink.Handle{h0, h1} {
		l, err := h.LinkByName(fmt.Sprintf("u%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ips[i], Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	key := bytes.Repeat([]byte{1}, KeySize)
	tuns := make([]*Tunnel, 2)
	for i := range 2 {
		err := sandbox.Do(hosts[i], func() error {
			var err error
			tuns[i], err = Open(sbs[i], 4094, ips[i], 9000, 1500, key)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer tuns[i].Close()
		if err := tuns[i].AddPeer(ips[1-i]); err != nil {
			t.Fatal(err)
		}
	}
	// A UDP listener in sandbox 1 on host 1's address; a sender in sandbox 0.
	var rc, sc *net.UDPConn
	if err := sandbox.Do(sbs[1], func() error {
		var err error
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ips[1], Port: 7777})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := sandbox.Do(sbs[0], func() error {
		var err error
		sc, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: ips[1], Port: 7777})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 9000)
		n := 0
		for {
			rc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := rc.Read(buf); err != nil {
				got <- n
				return
			}
			if n++; n == 300 {
				got <- n
				return
			}
		}
	}()
	// Rekeys and peer churn beside the traffic; the keys of both ends
	// change together, as the managers hand them out.
	stop := make(chan struct{})
	churn := make(chan struct{})
	go func() {
		defer close(churn)
		for k := byte(2); ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			nk := bytes.Repeat([]byte{k}, KeySize)
			for _, tn := range tuns {
				tn.SetKey(nk)
				other := net.IPv4(198, 18, 202, k)
				tn.AddPeer(other)
				tn.RemovePeer(other)
			}
		}
	}()
	payload := bytes.Repeat([]byte("x"), 5000) // several chunks over the veth's 1500
	var n int
	deadline := time.After(20 * time.Second)
send:
	for {
		select {
		case n = <-got:
			break send
		case <-deadline:
			break send
		case <-time.After(5 * time.Millisecond):
			sc.Write(payload)
		}
	}
	close(stop)
	<-churn
	if n < 300 {
		t.Fatalf("%d datagrams crossed while the keys changed, want 300", n)
	}
}

// loopbackPair is an eventfd for the loops' stop, a receiving and a sending
// tunnel socket on loopback, and the receiver's address; all closed when t
// ends.
func loopbackPair(t *testing.T) (stop, rfd, sfd int, to *unix.SockaddrInet4) {
	t.Helper()
	loopback := [4]byte{127, 0, 0, 1}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(stop) })
	for _, fd := range []*int{&rfd, &sfd} {
		if *fd, err = udpSocket(loopback, 0); err != nil {
			t.Fatal(err)
		}
		c := *fd
		t.Cleanup(func() { unix.Close(c) })
	}
	ra, err := unix.Getsockname(rfd)
	if err != nil {
		t.Fatal(err)
	}
	return stop, rfd, sfd, &unix.SockaddrInet4{Addr: loopback, Port: ra.(*unix.SockaddrInet4).Port}
}
