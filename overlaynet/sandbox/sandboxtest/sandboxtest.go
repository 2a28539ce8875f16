// Package sandboxtest builds small topologies of network namespaces for the
// tests of the overlaynet packages (in the spirit of net/http/httptest):
// namespaces removed when the test ends, bridges and veths between them, and
// a TCP server that tells each client who answered and whom it saw.
package sandboxtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// Dir holds test namespaces as "<pid>-<test>-<name>", so that concurrent runs
// never share one and a crashed run's are recognised by their dead pid.
const Dir = "/run/shoal-test-netns"

// Main is a TestMain: as root it first sweeps what crashed runs left, then
// runs the tests.
func Main(m *testing.M) {
	if os.Geteuid() == 0 {
		Sweep()
	}
	os.Exit(m.Run())
}

// Sweep removes the namespaces left by test processes that are gone.
func Sweep() {
	ents, _ := os.ReadDir(Dir)
	for _, e := range ents {
		pid, _, _ := strings.Cut(e.Name(), "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		sandbox.Remove(filepath.Join(Dir, e.Name()))
	}
}

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// NS makes a namespace that is removed when the test ends.
func NS(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(Dir, strconv.Itoa(os.Getpid())+"-"+strings.ReplaceAll(t.Name(), "/", "_")+"-"+name)
	t.Cleanup(func() { sandbox.Remove(p) })
	if err := sandbox.Create(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Bridge adds an up bridge named name in ns, addressed addr (CIDR) unless
// addr is empty.
func Bridge(t *testing.T, ns, name, addr string) {
	t.Helper()
	h, err := sandbox.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("bridge %s: %v", name, err)
	}
	up(t, h, name, addr)
}

// Link joins namespace a to namespace b with a veth pair: aName in a (on the
// bridge master if not empty, else addressed aAddr) and bName in b addressed
// bAddr (CIDR; empty leaves it unaddressed).
func Link(t *testing.T, a, aName, master, aAddr, b, bName, bAddr string) {
	t.Helper()
	h, err := sandbox.Handle(a)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	target, err := netns.GetFromPath(b)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	la := netlink.NewLinkAttrs()
	la.Name = aName
	if master != "" {
		br, err := h.LinkByName(master)
		if err != nil {
			t.Fatal(err)
		}
		la.MasterIndex = br.Attrs().Index
	}
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: bName, PeerNamespace: netlink.NsFd(target)}); err != nil {
		t.Fatalf("veth %s/%s: %v", aName, bName, err)
	}
	up(t, h, aName, aAddr)
	hb, err := sandbox.Handle(b)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	up(t, hb, bName, bAddr)
}

func up(t *testing.T, h *netlink.Handle, name, addr string) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "" {
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// DefaultRoute routes everything in ns via gw.
func DefaultRoute(t *testing.T, ns, gw string) {
	t.Helper()
	h, err := sandbox.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("default route via %s: %v", gw, err)
	}
}

// Forwarding turns IPv4 forwarding on in ns (a router).
func Forwarding(t *testing.T, ns string) {
	t.Helper()
	err := sandbox.Do(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// MAC returns the hardware address of link name in ns.
func MAC(t *testing.T, ns, name string) net.HardwareAddr {
	t.Helper()
	h, err := sandbox.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// Hello is what a Serve server sends first: its name and the client address
// it saw.
type Hello struct{ Name, Peer string }

// Serve runs a TCP server on :port in ns. On accept it sends
// "<name> <client ip>", then answers each line with "<name>:<line>". It
// stops, with its connections, when the test ends.
func Serve(t *testing.T, ns, name string, port int) {
	t.Helper()
	var l net.Listener
	err := sandbox.Do(ns, func() (err error) {
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s %s\n", name, host)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s:%s\n", name, sc.Text())
				}
			}()
		}
	}()
}

// Dial connects from ns to addr within timeout and returns the connection
// and the server's Hello.
func Dial(ns, addr string, timeout time.Duration) (net.Conn, Hello, error) {
	var c net.Conn
	err := sandbox.Do(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return nil, Hello{}, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, Hello{}, fmt.Errorf("read hello from %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	name, peer, _ := strings.Cut(strings.TrimSpace(line), " ")
	return c, Hello{Name: name, Peer: peer}, nil
}

// Hits opens n connections from ns to addr and counts the Hellos.
func Hits(t *testing.T, ns, addr string, n int) map[Hello]int {
	t.Helper()
	seen := map[Hello]int{}
	for i := 0; i < n; i++ {
		c, h, err := Dial(ns, addr, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		c.Close()
		seen[h]++
	}
	return seen
}
