package encrypt

import "encoding/binary"

// The TUN device is opened with a virtio-net header on every packet and
// checksum offload (TUN_F_CSUM; no segmentation offload): the kernel hands
// over a VXLAN packet whose inner TCP or UDP checksum is still to be
// completed (NEEDS_CSUM, where it starts and where it goes) instead of
// computing it for a device that cannot, and the peer's kernel, given the
// same header, takes the packet as checksummed locally, so neither its
// VXLAN socket nor the container's conntrack sums it again. Three passes
// over every byte fewer (perf: 3.7 % of all CPU at 5 Gbit/s). The header
// crosses inside the encryption, so a peer's header is as trusted as the
// packet it comes with; it is still checked to be a plain one.
const (
	tunFCsum         = 0x01 // TUN_F_CSUM
	vnetHdrLen       = 10   // struct virtio_net_hdr
	vnetNeedsCsum    = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone      = 0    // VIRTIO_NET_HDR_GSO_NONE
	vnetFlagsOffset  = 0
	vnetGSOOffset    = 1
	vnetCsumStartOff = 6
	vnetCsumOffOff   = 8
)

// validVnetHdr reports whether inner starts with a header this tunnel
// writes: no segmentation, at most NEEDS_CSUM, a checksum inside the packet.
func validVnetHdr(inner []byte) bool {
	if len(inner) < vnetHdrLen {
		return false
	}
	flags, gso := inner[vnetFlagsOffset], inner[vnetGSOOffset]
	if gso != vnetGSONone || flags&^vnetNeedsCsum != 0 {
		return false
	}
	if flags == 0 {
		return true
	}
	start := int(binary.NativeEndian.Uint16(inner[vnetCsumStartOff:]))
	off := int(binary.NativeEndian.Uint16(inner[vnetCsumOffOff:]))
	return start+off+2 <= len(inner)-vnetHdrLen
}
