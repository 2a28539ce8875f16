package overlay

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
	"golang.org/x/sys/unix"
)

// A container that looks up a peer's address before this node has
// programmed the peer (the address allocated, the task not yet announced by
// its node) gets no answer from the VXLAN device's ARP proxy, and its
// neighbour entry stays incomplete until the kernel asks again, a second
// later (retrans_time), with every packet to the peer queued on it: a task's
// first connection through a fresh DNS answer or VIP backend took a second
// (BenchmarkOverlayStartToAnswer: 0.99 s in every start on a fast machine).
// So a peer that is new to a sandbox, or whose MAC changed, is announced to
// the sandbox's containers with a gratuitous ARP, which completes such an
// entry at once (and corrects a stale one; Linux updates an existing entry
// from it and creates none, arp_accept being 0).

// announced records, per network, the peers announced to its sandbox (IP
// to MAC), so that reprogramming a peer (a node's whole state is merged
// again at each change) sends nothing. Guarded by Manager.mu.
type announced map[uint32]map[string]string

// fresh reports whether ip/mac was not yet announced on vni, and records it.
func (a announced) fresh(vni uint32, ip net.IP, mac net.HardwareAddr) bool {
	peers := a[vni]
	if peers == nil {
		peers = map[string]string{}
		a[vni] = peers
	}
	k, v := ip.String(), mac.String()
	if peers[k] == v {
		return false
	}
	peers[k] = v
	return true
}

// forget drops ip from vni's record (the peer withdrawn).
func (a announced) forget(vni uint32, ip net.IP) { delete(a[vni], ip.String()) }

// garpFrame is a gratuitous ARP request (RFC 5227's announcement: sender and
// target address both ip, target hardware address zero) from mac, sent to
// the broadcast address.
func garpFrame(ip net.IP, mac net.HardwareAddr) []byte {
	f := make([]byte, 14+28)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	arp := f[14:]
	binary.BigEndian.PutUint16(arp[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(arp[2:4], unix.ETH_P_IP)
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:8], 1) // request
	copy(arp[8:14], mac)
	copy(arp[14:18], ip.To4())
	copy(arp[24:28], ip.To4())
	return f
}

// sendGARP sends ip/mac's announcement out of the bridge of the sandbox at
// path: the bridge floods it to the containers' veths, and the VXLAN device,
// an ARP proxy, keeps ARP frames to itself, so no other node sees it.
func sendGARP(path string, bridgeIndex int, ip net.IP, mac net.HardwareAddr) error {
	frame := garpFrame(ip, mac)
	err := sandbox.Do(path, func() error {
		proto := int(htons(unix.ETH_P_ARP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: bridgeIndex, Halen: 6}
		copy(to.Addr[:], frame[0:6])
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("announce %s at %s: %w", ip, mac, err)
	}
	return nil
}

// htons is v in network byte order, as packet sockets take protocols.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
