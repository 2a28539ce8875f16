package overlay_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/encrypt"
	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// capture records every frame seen on ifName inside ns (an AF_PACKET
// socket) until stop is called, and returns them concatenated.
func capture(t *testing.T, ns, ifName string) (stop func() []byte) {
	t.Helper()
	var fd int
	err := sandbox.Do(ns, func() error {
		var err error
		proto := int(htons(unix.ETH_P_ALL))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			unix.Close(fd)
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifName, err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	var (
		mu   sync.Mutex
		seen []byte
		done = make(chan struct{})
		quit = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-quit:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == nil {
				mu.Lock()
				seen = append(seen, buf[:n]...)
				mu.Unlock()
			}
		}
	}()
	var once sync.Once
	stop = func() []byte {
		once.Do(func() { close(quit); <-done; unix.Close(fd) })
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func newKey(t *testing.T) []byte {
	k := make([]byte, encrypt.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// echoWithin is echo with a longer deadline (a key rotation's handshake).
func echoWithin(c net.Conn, msg string, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte(msg)) {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// TestEncryptedNetwork: two hosts on an encrypted network exchange a marker
// that never shows on the underlay, while the same exchange on a plaintext
// network does show it (so the capture can see it); a key rotation keeps a
// TCP connection; a third host with another key, or speaking plaintext
// VXLAN on the same VNI, cannot reach the containers; the last Detach
// leaves no tunnel (its UDP port is free again).
func TestEncryptedNetwork(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 3)
	dir := t.TempDir()
	key := newKey(t)
	enc := testNet(4200)
	enc.Key = key
	plain := testNet(4201)
	plain.Gateway = &net.IPNet{IP: net.IPv4(198, 19, 251, 1).To4(), Mask: net.CIDRMask(24, 32)}
	plainAddr := func(i int) *net.IPNet {
		return &net.IPNet{IP: net.IPv4(198, 19, 251, byte(10+i)).To4(), Mask: net.CIDRMask(24, 32)}
	}
	var mgrs []*overlay.Manager
	var ctrs, pctrs []string
	for i, h := range hosts[:2] {
		m := h.manager(t)
		c := newNetNS(t, filepath.Join(dir, h.name+"-ctr"))
		if err := m.Attach(enc, overlay.Endpoint{ID: "enc" + h.name, NetNSPath: c, Addr: containerAddr(i)}); err != nil {
			t.Fatal(err)
		}
		pc := newNetNS(t, filepath.Join(dir, h.name+"-pctr"))
		if err := m.Attach(plain, overlay.Endpoint{ID: "plain" + h.name, NetNSPath: pc, Addr: plainAddr(i)}); err != nil {
			t.Fatal(err)
		}
		mgrs, ctrs, pctrs = append(mgrs, m), append(ctrs, c), append(pctrs, pc)
	}
	t.Cleanup(func() {
		for i, m := range mgrs {
			m.Detach(4200, "enc"+hosts[i].name)
			m.Detach(4201, "plain"+hosts[i].name)
		}
	})
	// The tunnel's MTU less VXLAN's, not the underlay's: the host
	// fragments the tunnel's datagrams.
	if mtu := linkMTU(t, ctrs[0], "eth0"); mtu != encrypt.MTU-overlay.VXLANOverhead {
		t.Fatalf("encrypted container MTU %d, want %d", mtu, encrypt.MTU-overlay.VXLANOverhead)
	}
	for i, m := range mgrs {
		o := 1 - i
		for _, p := range []struct {
			vni uint32
			ip  net.IP
		}{{4200, containerAddr(o).IP}, {4201, plainAddr(o).IP}} {
			if err := m.AddPeer(p.vni, p.ip, overlay.MACFromIP(p.ip), hosts[o].ip); err != nil {
				t.Fatal(err)
			}
		}
	}
	echoServer(t, ctrs[1], containerAddr(1).IP)
	echoServer(t, pctrs[1], plainAddr(1).IP)

	const marker = "SHOAL-MARKER-7f3a9c-"
	exchange := func(ns string, ip net.IP) error {
		if err := reachable(ns, ip, 10*time.Second); err != nil {
			return fmt.Errorf("not reachable: %w", err)
		}
		c, err := dial(ns, ip, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, marker+"payload\n")
	}

	stop := capture(t, hosts[0].ns, "eth0")
	if err := exchange(pctrs[0], plainAddr(1).IP); err != nil {
		t.Fatalf("plaintext network: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if !bytes.Contains(stop(), []byte(marker)) {
		t.Fatal("the capture does not see the marker on a plaintext network: it cannot show anything")
	}

	stop = capture(t, hosts[0].ns, "eth0")
	if err := exchange(ctrs[0], containerAddr(1).IP); err != nil {
		t.Fatalf("encrypted network: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	seen := stop()
	if bytes.Contains(seen, []byte(marker)) {
		t.Fatal("the marker crossed the underlay in plaintext on an encrypted network")
	}
	if len(seen) == 0 {
		t.Fatal("nothing captured on the encrypted network")
	}

	// Rotation during a long-lived connection.
	conn, err := dial(ctrs[0], containerAddr(1).IP, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echo(conn, "before rotation\n"); err != nil {
		t.Fatal(err)
	}
	rotated := enc
	rotated.Key = newKey(t)
	for i, m := range mgrs {
		// The agent attaching its task again with the network's new key.
		if err := m.Attach(rotated, overlay.Endpoint{ID: "enc" + hosts[i].name, NetNSPath: ctrs[i], Addr: containerAddr(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := echoWithin(conn, "after rotation\n", 20*time.Second); err != nil {
		t.Fatalf("connection dropped by the key rotation: %v", err)
	}

	// host1's daemon stops (its tunnels with it) and starts again: the
	// adopted sandbox has no way out, so nothing leaks, until the agent
	// attaches its task again; the peers the gossip programmed before that
	// are the tunnel's peers.
	mgrs[0].CloseTunnels()
	conn.Close()
	if err := reachable(ctrs[0], containerAddr(1).IP, time.Second); err == nil {
		t.Fatal("an encrypted sandbox without its tunnel still reaches the other node")
	}
	mgrs[0] = hosts[0].manager(t)
	ip := containerAddr(1).IP
	if err := mgrs[0].AddPeer(4200, ip, overlay.MACFromIP(ip), hosts[1].ip); err != nil {
		t.Fatal(err)
	}
	if err := mgrs[0].Attach(rotated, overlay.Endpoint{ID: "enc" + hosts[0].name, NetNSPath: ctrs[0], Addr: containerAddr(0)}); err != nil {
		t.Fatal(err)
	}
	if err := reachable(ctrs[0], ip, 10*time.Second); err != nil {
		t.Fatalf("no path after the restart and the agent's attach: %v", err)
	}

	// A third host with another key cannot reach host2's container.
	intruder := hosts[2].manager(t)
	ic := newNetNS(t, filepath.Join(dir, "intruder-ctr"))
	wrong := enc
	wrong.Key = newKey(t)
	if err := intruder.Attach(wrong, overlay.Endpoint{ID: "intruder", NetNSPath: ic, Addr: containerAddr(5)}); err != nil {
		t.Fatal(err)
	}
	if err := intruder.AddPeer(4200, ip, overlay.MACFromIP(ip), hosts[1].ip); err != nil {
		t.Fatal(err)
	}
	if err := reachable(ic, ip, 3*time.Second); err == nil {
		t.Fatal("a node with another key reached a container of the encrypted network")
	}
	intruder.Detach(4200, "intruder")
	// Nor can it with plaintext VXLAN on the same VNI.
	if err := intruder.Attach(testNet(4200), overlay.Endpoint{ID: "intruder", NetNSPath: ic, Addr: containerAddr(5)}); err != nil {
		t.Fatal(err)
	}
	if err := intruder.AddPeer(4200, ip, overlay.MACFromIP(ip), hosts[1].ip); err != nil {
		t.Fatal(err)
	}
	if err := reachable(ic, ip, 3*time.Second); err == nil {
		t.Fatal("plaintext VXLAN on an encrypted network's VNI reached its container")
	}
	intruder.Detach(4200, "intruder")

	// The last Detach closes the tunnel: its UDP port is free again.
	for i, m := range mgrs {
		if err := m.Detach(4200, "enc"+hosts[i].name); err != nil {
			t.Fatal(err)
		}
	}
	err = sandbox.Do(hosts[0].ns, func() error {
		c, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", encrypt.Port(4200)))
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("tunnel port still bound after the last Detach: %v", errors.Unwrap(err))
	}
}
