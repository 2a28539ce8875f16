// Package encrypt carries an encrypted overlay network's VXLAN packets between
// nodes inside WireGuard, in user space (golang.zx2c4.com/wireguard over a TUN
// device): these kernels have neither ESP nor a WireGuard module.
//
// The TUN device lives in the network's sandbox, not in the host namespace,
// and the sandbox's VXLAN device is created in the sandbox too (its UDP socket
// is there). The TUN device carries the node's own underlay address and the
// sandbox's default route, so the VXLAN device keeps its usual source and
// remote addresses (the underlay ones, as the peer table programs them) while
// the only way those packets can leave the sandbox is the tunnel: there is no
// plaintext path to fall back to. WireGuard's UDP socket is opened in the
// daemon's (host) namespace.
//
// Keys: every node on the network derives every node's WireGuard key pair and
// a preshared key from the network key the managers hand out with the network
// (HKDF-SHA256 over the key and the node's underlay address). Holding the
// network key is what lets a node into the network, as with Docker's IPsec
// keys; a node without it can neither read nor inject. A new network key
// (rotation) replaces the device's key and its peers; TCP connections over the
// tunnel ride over the few round trips of the new handshake.
package encrypt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// KeySize is the size of a network key.
const KeySize = 32

// Option is the driver option that makes an overlay network encrypted
// (`network create --opt encrypted`, as Docker's).
const Option = "encrypted"

// NetworkKey derives network vni's key from a cluster data key the managers
// distribute and rotate (the newest gossip key): HKDF with a label of its
// own, so the tunnel's keys are independent of the gossip's use of it, and
// a key per network.
func NetworkKey(clusterKey []byte, vni uint32) []byte {
	k := derive(clusterKey, fmt.Sprintf("network %d", vni))
	return k[:]
}

// Overhead is what the tunnel adds to a packet (IPv4 20 + UDP 8 + WireGuard
// 32, rounded up as wg-quick does to leave room for IPv6 underlays).
const Overhead = 80

// BasePort is the first UDP port of the tunnels; network VNI listens on
// BasePort + VNI mod PortRange, so every node knows its peers' ports.
const (
	BasePort  = 51820
	PortRange = 4096
)

// MTU is the TUN device's MTU when the network sets none: WireGuard's
// datagrams then exceed the underlay's MTU and the host fragments them,
// which costs far less than as many packets through WireGuard in user space
// (measured on the test hosts: 1500 0.44, 9000 1.5, 32000 2.4, 60000 2.7
// Gbit/s; past 32000 a lost fragment costs more and gains little).
const MTU = 32000

// LinkName is the TUN device's name inside a sandbox.
const LinkName = "wg0"

// Port is the UDP port of network vni's tunnel on every node.
func Port(vni uint32) int { return BasePort + int(vni%PortRange) }

// derive expands the network key into 32 bytes for purpose.
func derive(key []byte, purpose string) [32]byte {
	var out [32]byte
	r := hkdf.New(sha256.New, key, nil, []byte("shoal overlay wireguard "+purpose))
	if _, err := io.ReadFull(r, out[:]); err != nil {
		panic(err) // HKDF-SHA256 gives up to 8160 bytes
	}
	return out
}

// PrivateKey is the WireGuard private key of the node at underlay address ip
// on a network with key key.
func PrivateKey(key []byte, ip net.IP) [32]byte {
	k := derive(key, "node "+ip.To4().String())
	k[0] &= 248 // curve25519 clamping
	k[31] = (k[31] & 127) | 64
	return k
}

// PublicKey is the public half of PrivateKey(key, ip).
func PublicKey(key []byte, ip net.IP) [32]byte {
	priv := PrivateKey(key, ip)
	var pub [32]byte
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		panic(err) // only for low-order points; clamping excludes them
	}
	copy(pub[:], p)
	return pub
}

// presharedKey mixes the network key into every handshake too.
func presharedKey(key []byte) [32]byte { return derive(key, "preshared") }

// Tunnel is one encrypted network's WireGuard device on this node. It is safe
// for concurrent use.
type Tunnel struct {
	vni   uint32
	local net.IP
	dev   *device.Device

	mu    sync.Mutex
	key   []byte
	peers map[string]bool // underlay addresses of the peers
}

// Open makes network vni's tunnel: a TUN device of MTU mtu in the sandbox at
// sandboxPath carrying local (this node's underlay address) and the default
// route, and a WireGuard device behind it listening on Port(vni) in the
// caller's namespace. On error nothing is left.
func Open(sandboxPath string, vni uint32, local net.IP, mtu int, key []byte) (*Tunnel, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("tunnel of network %d: network key has %d bytes, want %d", vni, len(key), KeySize)
	}
	if local.To4() == nil {
		return nil, fmt.Errorf("tunnel of network %d: local address %q is not IPv4", vni, local)
	}
	var td tun.Device
	err := sandbox.Do(sandboxPath, func() error {
		var err error
		td, err = tun.CreateTUN(LinkName, mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tunnel of network %d: create TUN: %w", vni, err)
	}
	if err := route(sandboxPath, local); err != nil {
		td.Close()
		return nil, fmt.Errorf("tunnel of network %d: %w", vni, err)
	}
	logger := device.NewLogger(device.LogLevelSilent, "")
	t := &Tunnel{vni: vni, local: local.To4(), key: append([]byte(nil), key...), peers: map[string]bool{},
		dev: device.NewDevice(td, conn.NewDefaultBind(), logger)}
	priv := PrivateKey(key, local)
	if err := t.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hex.EncodeToString(priv[:]), Port(vni))); err != nil {
		t.dev.Close()
		return nil, fmt.Errorf("tunnel of network %d: configure: %w", vni, err)
	}
	if err := t.dev.Up(); err != nil {
		t.dev.Close()
		return nil, fmt.Errorf("tunnel of network %d: up: %w", vni, err)
	}
	return t, nil
}

// route addresses the TUN device with local and sends everything the sandbox
// does not hold itself through it.
func route(sandboxPath string, local net.IP) error {
	h, err := sandbox.Handle(sandboxPath)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(LinkName)
	if err != nil {
		return fmt.Errorf("find %s: %w", LinkName, err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: local.To4(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		return fmt.Errorf("address %s: %w", LinkName, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", LinkName, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}); err != nil {
		return fmt.Errorf("default route via %s: %w", LinkName, err)
	}
	return nil
}

// peerConfig is the UAPI text adding (or, with remove, removing) the peer at
// underlay address ip under key.
func (t *Tunnel) peerConfig(key []byte, ip net.IP, remove bool) string {
	pub := PublicKey(key, ip)
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(pub[:]))
	if remove {
		b.WriteString("remove=true\n")
		return b.String()
	}
	psk := presharedKey(key)
	fmt.Fprintf(&b, "preshared_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\n",
		hex.EncodeToString(psk[:]), net.JoinHostPort(ip.String(), fmt.Sprint(Port(t.vni))), ip)
	return b.String()
}

// AddPeer lets the node at underlay address ip into the tunnel; adding it
// again changes nothing.
func (t *Tunnel) AddPeer(ip net.IP) error {
	ip = ip.To4()
	if ip == nil {
		return fmt.Errorf("tunnel of network %d: peer address is not IPv4", t.vni)
	}
	if ip.Equal(t.local) {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peers[ip.String()] {
		return nil
	}
	if err := t.dev.IpcSet(t.peerConfig(t.key, ip, false)); err != nil {
		return fmt.Errorf("tunnel of network %d: add peer %s: %w", t.vni, ip, err)
	}
	t.peers[ip.String()] = true
	return nil
}

// RemovePeer drops the node at underlay address ip; one that is not a peer
// is fine.
func (t *Tunnel) RemovePeer(ip net.IP) error {
	ip = ip.To4()
	t.mu.Lock()
	defer t.mu.Unlock()
	if ip == nil || !t.peers[ip.String()] {
		return nil
	}
	if err := t.dev.IpcSet(t.peerConfig(t.key, ip, true)); err != nil {
		return fmt.Errorf("tunnel of network %d: remove peer %s: %w", t.vni, ip, err)
	}
	delete(t.peers, ip.String())
	return nil
}

// SetKey switches the tunnel to a new network key: its own key pair, and
// every peer's public and preshared key. The same key again changes nothing.
func (t *Tunnel) SetKey(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("tunnel of network %d: network key has %d bytes, want %d", t.vni, len(key), KeySize)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if string(key) == string(t.key) {
		return nil
	}
	priv := PrivateKey(key, t.local)
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(priv[:]))
	for p := range t.peers {
		b.WriteString(t.peerConfig(t.key, net.ParseIP(p), true))
		b.WriteString(t.peerConfig(key, net.ParseIP(p), false))
	}
	if err := t.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("tunnel of network %d: new key: %w", t.vni, err)
	}
	t.key = append([]byte(nil), key...)
	return nil
}

// Key returns the network key in use.
func (t *Tunnel) Key() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.key...)
}

// Close stops the device's goroutines and closes the TUN device, which the
// kernel then deletes with its address and route.
func (t *Tunnel) Close() {
	t.dev.Close()
}
