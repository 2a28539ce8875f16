package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// addOutside makes an "outside" namespace joined to the current namespace by
// a veth: the host end gets hostAddr, the outside end outsideAddr (same
// prefix). It returns the outside namespace path.
func addOutside(dir, hostLink string, hostAddr, outsideAddr netip.Prefix) (string, error) {
	path := dir + "/outside"
	if err := sandbox.Create(path); err != nil {
		return "", err
	}
	err := sandbox.AddVeth(sandbox.Veth{
		HostName:  hostLink,
		NetNSPath: path,
		IfName:    "eth0",
		Addr:      &net.IPNet{IP: outsideAddr.Addr().AsSlice(), Mask: net.CIDRMask(outsideAddr.Bits(), 32)},
	})
	if err != nil {
		return "", err
	}
	l, err := netlink.LinkByName(hostLink)
	if err != nil {
		return "", err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: hostAddr.Addr().AsSlice(), Mask: net.CIDRMask(hostAddr.Bits(), 32)}}
	if err := netlink.AddrAdd(l, a); err != nil {
		return "", fmt.Errorf("address %s: %w", hostAddr, err)
	}
	return path, nil
}

// TestOutboundMasquerade: a container reaches a server in another namespace
// behind a host interface, and the server sees the host's address.
func TestOutboundMasquerade(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	outSubnet := freeSubnet(t)
	hostAddr := netip.PrefixFrom(outSubnet.Addr().Next(), 24)
	outAddr := netip.PrefixFrom(hostAddr.Addr().Next(), 24)
	link := testName(t, "o")
	dir := t.TempDir()
	t.Cleanup(func() {
		sandbox.DelLink(link)
		sandbox.Remove(dir + "/outside")
	})
	outside, err := addOutside(dir, link, hostAddr, outAddr)
	if err != nil {
		t.Fatal(err)
	}
	listenIn(t, outside, ":9000")
	ep, err := n.Attach(ctx, "out")
	if err != nil {
		t.Fatal(err)
	}
	saw, err := ask(ep.NetNSPath, net.JoinHostPort(outAddr.Addr().String(), "9000"))
	if err != nil {
		t.Fatalf("container -> outside: %v", err)
	}
	if saw != hostAddr.Addr().String() {
		t.Fatalf("outside server saw %s, want the host's %s (masquerade)", saw, hostAddr.Addr())
	}
	// And the other way: the outside reaches a published port of the host.
	listenIn(t, ep.NetNSPath, ":80")
	hp := freeHostPort(t)
	if _, err := n.Publish(ctx, "out", nil, []PortMapping{{HostPort: hp, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	saw, err = ask(outside, net.JoinHostPort(hostAddr.Addr().String(), strconv.Itoa(int(hp))))
	if err != nil {
		t.Fatalf("outside -> published port: %v", err)
	}
	if saw != outAddr.Addr().String() {
		t.Fatalf("container saw %s, want the outside client %s (no SNAT on inbound)", saw, outAddr.Addr())
	}
}

// TestForwardPolicyDrop runs a whole "Docker host" in a private namespace:
// iptables FORWARD policy DROP, br_netfilter calling iptables for bridged
// frames. Container to container, container to outside and outside to a
// published port must work, and must stop working without our FORWARD rules
// (which shows they are what lets the traffic through).
func TestForwardPolicyDrop(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	nsDir := t.TempDir()
	host := dir + "/host"
	if err := sandbox.Create(host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(nsDir)
		for _, e := range entries {
			sandbox.Remove(nsDir + "/" + e.Name())
		}
		sandbox.Remove(dir + "/outside")
		// Everything else (bridge, veths, tables) dies with the namespace.
		sandbox.Remove(host)
	})
	// Runs on a thread inside the private namespace: no t.Fatal in here.
	err := sandbox.Do(host, func() error {
		ctx := context.Background()
		if b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && string(b) != "1\n" {
			if err := os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		if out, err := exec.Command("iptables", "-w", "-P", "FORWARD", "DROP").CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -P FORWARD DROP: %v: %s", err, out)
		}
		const br = "shdrop0"
		n, err := New(ctx, Options{Name: br, Subnet: "198.19.0.0/24", StateDir: dir, NetNSDir: nsDir})
		if err != nil {
			return err
		}
		defer n.Remove(ctx)
		a, err := n.Attach(ctx, "a")
		if err != nil {
			return err
		}
		b, err := n.Attach(ctx, "b")
		if err != nil {
			return err
		}
		outside, err := addOutside(dir, "shout0", netip.MustParsePrefix("198.19.1.1/24"), netip.MustParsePrefix("198.19.1.2/24"))
		if err != nil {
			return err
		}
		ls, err := serve(outside, ":9000")
		if err != nil {
			return err
		}
		defer ls.Close()
		la, err := serve(a.NetNSPath, ":80")
		if err != nil {
			return err
		}
		defer la.Close()
		if _, err := n.Publish(ctx, "a", nil, []PortMapping{{HostPort: 8080, ContainerPort: 80}}); err != nil {
			return err
		}
		check := func() []error {
			var errs []error
			if err := ping(b.NetNSPath, a.IP); err != nil {
				errs = append(errs, fmt.Errorf("b -> a: %w", err))
			}
			if saw, err := ask(a.NetNSPath, "198.19.1.2:9000"); err != nil || saw != "198.19.1.1" {
				errs = append(errs, fmt.Errorf("a -> outside: saw %q, %v", saw, err))
			}
			if _, err := ask(outside, "198.19.1.1:8080"); err != nil {
				errs = append(errs, fmt.Errorf("outside -> published 8080: %w", err))
			}
			return errs
		}
		if errs := check(); errs != nil {
			return fmt.Errorf("with FORWARD policy DROP: %w", errors.Join(errs...))
		}
		if err := DisallowForward(ctx, br); err != nil {
			return err
		}
		if errs := check(); len(errs) != 3 {
			return fmt.Errorf("without our FORWARD rules only %d of 3 paths failed: %v", len(errs), errs)
		}
		if err := AllowForward(ctx, br); err != nil {
			return err
		}
		if errs := check(); errs != nil {
			return fmt.Errorf("after re-adding FORWARD rules: %w", errors.Join(errs...))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
