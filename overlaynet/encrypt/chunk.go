package encrypt

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A sealed packet (up to MTU plus overhead, far above the underlay's MTU) is
// cut into chunks that each fit one underlay datagram, and all of a packet's
// chunks leave in one send with UDP segmentation offload: the kernel carries
// them as one buffer as far as it can (on these hosts, veth and bridge all
// the way to the peer's socket, which takes them back in one receive with
// UDP GRO). The IP fragmentation this replaces cost a pass through the
// stack per 1,500 bytes. A chunk's header is not authenticated: a forged or
// damaged chunk makes its packet fail authentication, nothing more.
//
//	version 1 (1) | index (1) | count (1) | 0 (1) | chunk size (2) | 0 (2) | packet's sequence number (8)
const (
	chunkHeaderLen = 16
	chunkVersion   = 1
	maxChunks      = 64 // UDP_MAX_SEGMENTS of older kernels
	// maxGSO is the most one send with segmentation offload carries (an
	// IPv4 datagram's payload); a larger packet (a network MTU near 64 KiB)
	// leaves a chunk at a time.
	maxGSO = 65535 - 20 - 8
)

// chunkSize is the payload of a chunk for an underlay of MTU mtu: a
// datagram of IPv4 20 + UDP 8 + header + chunk fits the link.
func chunkSize(mtu int) int { return mtu - 20 - 8 - chunkHeaderLen }

// chunker cuts sealed packets into a send buffer of chunks.
type chunker struct {
	size    int // chunk payload
	headers [maxChunks][chunkHeaderLen]byte
	iov     [][]byte // header, chunk, header, chunk...
	oob     []byte
	msg     msgIO
}

// chunkSizeFor is the chunk payload for packets up to maxPacket over an
// underlay of MTU underlayMTU: no more than maxChunks, even on a small
// underlay MTU (the host fragments chunks larger than the link).
func chunkSizeFor(underlayMTU, maxPacket int) int {
	return max(chunkSize(underlayMTU), (maxPacket+maxChunks-1)/maxChunks)
}

func newChunker(underlayMTU, maxPacket int) *chunker {
	size := chunkSizeFor(underlayMTU, maxPacket)
	return &chunker{size: size, iov: make([][]byte, 0, 2*maxChunks), oob: make([]byte, unix.CmsgSpace(2))}
}

// cut lays pkt (sequence number seq) out as chunks, each its header and its
// part of pkt (gathered by the kernel: no copy), and returns them with the
// bytes they hold and the segment size to send them with (0: one datagram).
func (c *chunker) cut(pkt []byte, seq uint64) (iov [][]byte, total, seg int) {
	count := (len(pkt) + c.size - 1) / c.size
	c.iov = c.iov[:0]
	for i := range count {
		h := &c.headers[i]
		h[0], h[1], h[2] = chunkVersion, byte(i), byte(count)
		binary.BigEndian.PutUint16(h[4:6], uint16(c.size))
		binary.BigEndian.PutUint64(h[8:16], seq)
		c.iov = append(c.iov, h[:], pkt[i*c.size:min((i+1)*c.size, len(pkt))])
	}
	total = count*chunkHeaderLen + len(pkt)
	if count == 1 {
		return c.iov, total, 0
	}
	return c.iov, total, chunkHeaderLen + c.size
}

// segmentOOB is the control message asking for segments of size seg.
func (c *chunker) segmentOOB(seg int) []byte {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c.oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(c.oob[unix.CmsgLen(0):], uint16(seg))
	return c.oob
}

// send sends a packet's chunks to addr: in one call with segmentation
// offload while the kernel takes it, one datagram at a time otherwise.
func (c *chunker) send(fd, stop int, pkt []byte, seq uint64, to *unix.SockaddrInet4, gso *bool) error {
	iov, total, seg := c.cut(pkt, seq)
	if seg == 0 {
		return c.msg.send(fd, stop, iov, nil, to)
	}
	if *gso && total <= maxGSO {
		err := c.msg.send(fd, stop, iov, c.segmentOOB(seg), to)
		if err == nil || err == errStopped {
			return err
		}
		*gso = false // EIO or EINVAL: no UDP GSO on this path
	}
	for i := 0; i < len(iov); i += 2 {
		if err := c.msg.send(fd, stop, iov[i:i+2], nil, to); err == errStopped {
			return err
		}
	}
	return nil
}

// groSize reads the segment size of a coalesced receive from its control
// messages; 0 when the receive is one datagram.
func groSize(oob []byte) int {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob) // no allocation
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 4 {
			return int(binary.NativeEndian.Uint32(data))
		}
		oob = rest
	}
	return 0
}

// reassembly puts a peer's chunks back together. Chunks of a packet come
// in order and together (one send, one receive), so two packets in progress
// are plenty; a chunk of a third drops the older.
type reassembly struct {
	slots [2]partial
}

type partial struct {
	seq   uint64
	count int
	got   uint64 // bitmap of chunks in
	size  int    // chunk size
	last  int    // length of the last chunk, once in
	buf   []byte
}

// buffers are the receiving loop's spare packet buffers, shared by its
// peers' reassemblies: a buffer is held only while a packet is in progress,
// so memory follows the packets in flight, not the number of peers.
type buffers struct{ free [][]byte }

func (b *buffers) get(n int) []byte {
	if k := len(b.free); k > 0 {
		buf := b.free[k-1]
		b.free = b.free[:k-1]
		if len(buf) >= n {
			return buf
		}
	}
	return make([]byte, n)
}

// add takes one chunk; when it completes a packet, it returns the packet
// (valid until the next add: its buffer goes back to bufs) and its sequence
// number.
func (r *reassembly) add(chunk []byte, maxPacket int, bufs *buffers) ([]byte, uint64, bool) {
	if len(chunk) < chunkHeaderLen || chunk[0] != chunkVersion {
		return nil, 0, false
	}
	idx, count := int(chunk[1]), int(chunk[2])
	size := int(binary.BigEndian.Uint16(chunk[4:6]))
	seq := binary.BigEndian.Uint64(chunk[8:16])
	data := chunk[chunkHeaderLen:]
	if count == 0 || count > maxChunks || idx >= count || size == 0 || count*size > maxPacket+size ||
		(idx < count-1 && len(data) != size) || len(data) > size {
		return nil, 0, false
	}
	if count == 1 {
		return data, seq, true
	}
	p := r.slot(seq, count, size)
	if p == nil {
		return nil, 0, false
	}
	if p.buf == nil {
		p.buf = bufs.get(maxPacket + size)
	}
	copy(p.buf[idx*size:], data)
	p.got |= 1 << idx
	if idx == count-1 {
		p.last = len(data)
	}
	if p.got != 1<<count-1 {
		return nil, 0, false
	}
	pkt := p.buf[:(count-1)*size+p.last]
	p.count, p.got = 0, 0
	bufs.free = append(bufs.free, p.buf)
	p.buf = nil
	return pkt, seq, true
}

// slot returns the packet in progress with sequence number seq, starting
// it in a free or the older slot if it is new; nil if the chunk disagrees
// with the packet's first ones.
func (r *reassembly) slot(seq uint64, count, size int) *partial {
	var free *partial
	for i := range r.slots {
		p := &r.slots[i]
		if p.count != 0 && p.seq == seq {
			if p.count != count || p.size != size {
				return nil
			}
			return p
		}
		if free == nil || p.count == 0 || (free.count != 0 && p.seq < free.seq) {
			free = p
		}
	}
	free.seq, free.count, free.size, free.got, free.last = seq, count, size, 0, 0
	return free
}

// scatter lays a receive out so that a packet a peer sent whole, in one
// segmentation-offload send with this node's chunk size (the usual case:
// the same underlay MTU), lands contiguous: the chunk headers go to an
// array of their own and the chunks one after the other, which spares the
// reassembly's copy of every byte. Anything else is flattened and takes
// the reassembly's path.
type scatter struct {
	size int
	hdrs [maxChunks][chunkHeaderLen]byte
	data []byte
	iov  [][]byte
	flat []byte
}

func newScatter(size int) *scatter {
	s := &scatter{size: size, data: make([]byte, maxChunks*size), flat: make([]byte, maxChunks*(chunkHeaderLen+size))}
	for i := range maxChunks {
		s.iov = append(s.iov, s.hdrs[i][:], s.data[i*size:(i+1)*size])
	}
	return s
}

// whole returns the sealed packet and its sequence number when the n bytes
// received, in segments of seg (0: one datagram), are all the chunks of one
// packet, in order, cut to this node's chunk size.
func (s *scatter) whole(n, seg int) ([]byte, uint64, bool) {
	full := chunkHeaderLen + s.size
	if seg == 0 {
		seg = n
	}
	if n <= chunkHeaderLen || (seg != full && n > full) {
		return nil, 0, false
	}
	k := (n + seg - 1) / seg
	if k > maxChunks {
		return nil, 0, false
	}
	h0 := &s.hdrs[0]
	for i := range k {
		h := &s.hdrs[i]
		if h[0] != chunkVersion || int(h[1]) != i || int(h[2]) != k || h[3] != 0 ||
			int(binary.BigEndian.Uint16(h[4:6])) != s.size || *(*[8]byte)(h[8:16]) != *(*[8]byte)(h0[8:16]) {
			return nil, 0, false
		}
	}
	last := n - (k-1)*seg - chunkHeaderLen
	if last <= 0 || last > s.size {
		return nil, 0, false
	}
	return s.data[:(k-1)*s.size+last], binary.BigEndian.Uint64(h0[8:16]), true
}

// flatten returns the n bytes received as they came, in one buffer.
func (s *scatter) flatten(n int) []byte {
	out := s.flat[:0]
	for _, b := range s.iov {
		if len(out)+len(b) >= n {
			return append(out, b[:n-len(out)]...)
		}
		out = append(out, b...)
	}
	return out
}
