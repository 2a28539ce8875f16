package bridge

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// Test bridges are named "sht<pid>x<n>" so that concurrent runs never share
// one and leftovers of a crashed run can be recognised by their dead pid.
const testPrefix = "sht"

var testSeq atomic.Int32

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepLeftovers()
	}
	os.Exit(m.Run())
}

// sweepLeftovers removes bridges, tables and FORWARD rules of test runs whose
// process is gone.
func sweepLeftovers() {
	_, _ = RemoveForwardRules(context.Background(), func(name string) bool {
		pid, _, ok := strings.Cut(strings.TrimPrefix(name, testPrefix), "x")
		if !ok {
			pid, _, ok = strings.Cut(strings.TrimPrefix(name, testPrefix), "o")
		}
		if _, err := strconv.Atoi(pid); !strings.HasPrefix(name, testPrefix) || !ok || err != nil {
			return false
		}
		_, err := os.Stat("/proc/" + pid)
		return err != nil
	})
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, testPrefix) {
			continue
		}
		pid, _, ok := strings.Cut(strings.TrimPrefix(name, testPrefix), "x")
		if !ok {
			pid, _, ok = strings.Cut(strings.TrimPrefix(name, testPrefix), "o")
		}
		if _, err := strconv.Atoi(pid); !ok || err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		removeTable(name)
		DisallowForward(context.Background(), name)
		netlink.LinkDel(l)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (netns, netlink, nftables)")
	}
}

func testName(t *testing.T, kind string) string {
	return fmt.Sprintf("%s%d%s%d", testPrefix, os.Getpid(), kind, testSeq.Add(1))
}

// freeSubnet returns a /24 of 198.19.0.0/16 that no route or address of the
// current namespace overlaps (other engineers' test hosts use 198.18/15 too).
func freeSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	start := rand.IntN(256)
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte((start + i) % 256), 0}), 24)
		if checkOverlap("", p) == nil {
			return p
		}
	}
	t.Fatal("no free /24 in 198.19.0.0/16")
	return netip.Prefix{}
}

type testNetwork struct {
	*Network
	opts Options
}

// newTestNetwork makes a network with a unique bridge and subnet and removes
// it, with everything it made, when the test ends (also on failure).
func newTestNetwork(t *testing.T, subnet string) *testNetwork {
	t.Helper()
	needRoot(t)
	if subnet == "" {
		subnet = freeSubnet(t).String()
	}
	o := Options{Name: testName(t, "x"), Subnet: subnet, StateDir: t.TempDir(), NetNSDir: t.TempDir()}
	t.Cleanup(func() { cleanupNetwork(t, o) })
	n, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &testNetwork{Network: n, opts: o}
}

// cleanupNetwork removes what a network may have made, even if New failed
// half-way or the test replaced the *Network.
func cleanupNetwork(t *testing.T, o Options) {
	if n, err := New(context.Background(), o); err == nil {
		if err := n.Remove(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	entries, _ := os.ReadDir(o.NetNSDir)
	for _, e := range entries {
		sandbox.Remove(o.NetNSDir + "/" + e.Name())
	}
	removeTable(o.Name)
	DisallowForward(context.Background(), o.Name)
	sandbox.DelLink(o.Name)
}

// listenIn starts a TCP server in the namespace at path that writes the
// client's address and closes the connection.
func listenIn(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	l, err := serve(path, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serve is listenIn without testing.T, for code running on a locked thread
// (where t.Fatal must not be called). The caller closes the listener.
func serve(path, addr string) (net.Listener, error) {
	var l net.Listener
	err := sandbox.Do(path, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen in %s: %w", path, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	return l, nil
}

// ask dials addr (from the namespace at path, or the current one if path is
// empty) and returns the peer address the server saw.
func ask(path, addr string) (string, error) {
	var c net.Conn
	dial := func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	}
	var err error
	if path == "" {
		err = dial()
	} else {
		err = sandbox.Do(path, dial)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(strings.TrimSpace(line))
	return host, nil
}

// ping sends one ICMP echo from the namespace at path.
func ping(path string, ip net.IP) error {
	out, err := exec.Command("nsenter", "--net="+path, "busybox", "ping", "-c", "1", "-W", "2", ip.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v: %s", ip, path, err, out)
	}
	return nil
}

// freeHostPort asks the kernel for a free TCP port of the host.
func freeHostPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// portRuleCount counts the DNAT rules in the network's ports chain.
func portRuleCount(t *testing.T, bridge string) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tab := &nftables.Table{Name: tableName(bridge), Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(tab, &nftables.Chain{Name: "ports", Table: tab})
	if err != nil {
		t.Fatalf("list ports chain: %v", err)
	}
	return len(rules)
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}
