package encrypt

import (
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"

	"golang.org/x/crypto/hkdf"

	"github.com/shoal-project/shoal/overlaynet/encrypt/aegis"
)

// The packet is ESP (RFC 4303) with extended sequence numbers, carried in
// UDP, laid out as with AES-GCM (RFC 4106) but sealed with AEGIS-128L
// (package aegis: the same AES round instruction, 2.3-2.8 times GCM's speed):
//
//	SPI (4) | sequence, low 32 bits (4) | IV = the 64-bit sequence (8) |
//	AEGIS-128L(inner packet | padding | pad length | next header 253) | ICV (16)
//
// The inner packet is the TUN device's: a virtio-net header (10 bytes: the
// kernel's checksum offload state, see vnet.go) and the IPv4 packet; next
// header 253 (RFC 3692's experimental value) says so.
//
// The additional data is SPI | sequence high | sequence low (RFC 4106 5),
// the 16-byte nonce the SA's 8-byte salt and the IV.
const (
	headerLen  = 16
	icvLen     = 16
	trailerLen = 2   // pad length, next header
	innerNext  = 253 // next header: virtio-net header and IPv4
)

// maxOverhead is what sealing adds at most to a packet: header, padding to
// 4 bytes, trailer and ICV.
const maxOverhead = headerLen + 3 + trailerLen + icvLen

// sa is one direction's security association: a sender's SPI and the key
// and salt derived for it.
type sa struct {
	spi  uint32
	aead cipher.AEAD
	salt [8]byte
	seq  atomic.Uint64 // the last sequence number sealed (sending SAs)
}

// newSA derives the SA that the node at underlay address sender uses under
// SPI spi on a network with key networkKey. Every sender's SPI gets a key of
// its own, so a sender that starts again (another random SPI) never reuses
// a nonce, whatever its sequence numbers.
func newSA(networkKey []byte, sender netip.Addr, spi uint32) (*sa, error) {
	var km [aegis.KeySize + 8]byte // key and salt
	r := hkdfReader(networkKey, fmt.Sprintf("esp aegis128l %s %08x", sender, spi))
	if _, err := io.ReadFull(r, km[:]); err != nil {
		return nil, fmt.Errorf("derive SA %08x of %s: %w", spi, sender, err)
	}
	aead, err := aegis.New(km[:aegis.KeySize])
	if err != nil {
		return nil, fmt.Errorf("SA %08x of %s: %w", spi, sender, err)
	}
	s := &sa{spi: spi, aead: aead}
	copy(s.salt[:], km[aegis.KeySize:])
	return s, nil
}

// seal turns buf[headerLen:headerLen+n], an inner packet, into an ESP
// packet with sequence number seq, in place, and returns it. buf must have
// room for maxOverhead more bytes.
func (s *sa) seal(buf []byte, n int, seq uint64) []byte {
	pad := (4 - (n+trailerLen)%4) % 4
	end := headerLen + n
	for i := 1; i <= pad; i++ {
		buf[end] = byte(i) // RFC 4303 2.4: 1, 2, 3, ...
		end++
	}
	buf[end], buf[end+1] = byte(pad), innerNext
	end += trailerLen
	binary.BigEndian.PutUint32(buf[0:4], s.spi)
	binary.BigEndian.PutUint32(buf[4:8], uint32(seq))
	binary.BigEndian.PutUint64(buf[8:16], seq)
	var nonce [aegis.NonceSize]byte
	copy(nonce[:8], s.salt[:])
	copy(nonce[8:], buf[8:16])
	aad := espAAD(s.spi, seq)
	s.aead.Seal(buf[headerLen:headerLen], nonce[:], buf[headerLen:end], aad[:])
	return buf[:end+icvLen]
}

// Errors of open, for counting and tests.
var (
	errShort   = errors.New("packet too short")
	errAuth    = errors.New("authentication failed")
	errTrailer = errors.New("bad padding or next header")
)

// espHeader reads an ESP packet's SPI and sequence number.
func espHeader(pkt []byte) (spi uint32, seq uint64, err error) {
	if len(pkt) < headerLen+trailerLen+icvLen {
		return 0, 0, errShort
	}
	seq = binary.BigEndian.Uint64(pkt[8:16])
	if uint32(seq) != binary.BigEndian.Uint32(pkt[4:8]) {
		return 0, 0, errAuth
	}
	return binary.BigEndian.Uint32(pkt[0:4]), seq, nil
}

// open authenticates and decrypts the ESP packet pkt (sequence number seq,
// from espHeader) in place and returns the inner packet.
func (s *sa) open(pkt []byte, seq uint64) ([]byte, error) {
	var nonce [aegis.NonceSize]byte
	copy(nonce[:8], s.salt[:])
	copy(nonce[8:], pkt[8:16])
	aad := espAAD(s.spi, seq)
	plain, err := s.aead.Open(pkt[headerLen:headerLen], nonce[:], pkt[headerLen:], aad[:])
	if err != nil {
		return nil, errAuth
	}
	if len(plain) < trailerLen {
		return nil, errTrailer
	}
	pad, next := int(plain[len(plain)-2]), plain[len(plain)-1]
	if next != innerNext || pad > 3 || len(plain) < trailerLen+pad {
		return nil, errTrailer
	}
	return plain[:len(plain)-trailerLen-pad], nil
}

func espAAD(spi uint32, seq uint64) [12]byte {
	var a [12]byte
	binary.BigEndian.PutUint32(a[0:4], spi)
	binary.BigEndian.PutUint64(a[4:12], seq)
	return a
}

// replayWindow is a sender's anti-replay state (RFC 4303 3.4.3, RFC 6479's
// bitmap): the highest sequence number seen and which of the windowSize
// before it arrived. A sender's sequence numbers start at its SA's creation
// time in nanoseconds, so one window serves all its SAs: an SA made later
// (a restart, a new key) numbers above every earlier one.
type replayWindow struct {
	top    uint64
	bitmap [windowSize / 64]uint64
}

const windowSize = 4096

// check reports whether seq may be accepted (not seen, not too old); it
// changes nothing, so that only authenticated packets move the window.
func (w *replayWindow) check(seq uint64) bool {
	if seq > w.top {
		return true
	}
	if w.top-seq >= windowSize-64 {
		// The oldest word is the one top's next word will reuse: RFC
		// 6479's window is one word short of its bitmap.
		return false
	}
	return w.bitmap[(seq/64)%(windowSize/64)]&(1<<(seq%64)) == 0
}

// accept records seq, which check allowed.
func (w *replayWindow) accept(seq uint64) {
	if seq > w.top {
		// Clear the words between the old top's and seq's.
		from, to := w.top/64+1, seq/64
		if to-from >= windowSize/64 || w.top == 0 {
			clear(w.bitmap[:])
		} else {
			for i := from; i <= to; i++ {
				w.bitmap[i%(windowSize/64)] = 0
			}
		}
		w.top = seq
	}
	w.bitmap[(seq/64)%(windowSize/64)] |= 1 << (seq % 64)
}

// hkdfReader expands key for purpose (HKDF-SHA256 with a label of shoal's).
func hkdfReader(key []byte, purpose string) io.Reader {
	return hkdf.New(sha256.New, key, nil, []byte("shoal overlay "+purpose))
}
