package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// The heartbeat fast path's datagrams. A session's first SessionMessage
// hands the agent a slot, its generation and a key (beat_port, beat_slot,
// beat_generation, beat_key); the agent then beats with a Beat datagram to
// that port on the manager's address and the manager answers with a
// BeatReply. Both are BeatSize bytes, the last BeatMACSize of which are
// HMAC-SHA256 under the session's key, truncated, over the rest: the key
// travelled on the session's mutual-TLS stream, so a datagram that verifies
// comes from that session's node. The two kinds have different magics, so
// an answer sent back at a manager is no beat. Numbers are big-endian.
//
//	Beat:      magic "SHB1" | slot u32 | generation u64 | seq u64 | sent i64 | 16 zero bytes | MAC
//	BeatReply: magic "SHB2" | slot u32 | generation u64 | seq u64 | sent i64 | answered i64 | period i64 | MAC
//
// seq rises with every beat of a session; a manager accepts each seq once.
// sent is the agent's clock (UnixNano), echoed; answered is the manager's
// clock at its answer, period the heartbeat period in nanoseconds.
const (
	BeatSize    = 64
	BeatMACSize = 16
	// BeatKeySize is the size of a session's beat key.
	BeatKeySize = 32
)

var (
	beatMagic  = [4]byte{'S', 'H', 'B', '1'}
	replyMagic = [4]byte{'S', 'H', 'B', '2'}
	// ErrBadBeat is a datagram that is not a well-formed, authentic beat
	// or reply.
	ErrBadBeat = errors.New("heartbeat datagram: malformed or not authentic")
)

// Beat is an agent's heartbeat datagram.
type Beat struct {
	Slot       uint32
	Generation uint64
	Seq        uint64
	Sent       int64
}

// BeatReply is a manager's answer to a Beat.
type BeatReply struct {
	Slot       uint32
	Generation uint64
	Seq        uint64
	Sent       int64
	Answered   int64
	Period     int64
}

// Seal appends b, authenticated with key, to dst.
func (b Beat) Seal(dst, key []byte) []byte {
	p := putHeader(beatMagic, b)
	return append(dst, seal(p, key)...)
}

// putHeader lays out the fields both datagrams start with.
func putHeader(magic [4]byte, b Beat) [BeatSize]byte {
	var p [BeatSize]byte
	copy(p[:4], magic[:])
	binary.BigEndian.PutUint32(p[4:], b.Slot)
	binary.BigEndian.PutUint64(p[8:], b.Generation)
	binary.BigEndian.PutUint64(p[16:], b.Seq)
	binary.BigEndian.PutUint64(p[24:], uint64(b.Sent))
	return p
}

// header reads the fields both datagrams start with.
func header(pkt []byte) Beat {
	return Beat{
		Slot:       binary.BigEndian.Uint32(pkt[4:]),
		Generation: binary.BigEndian.Uint64(pkt[8:]),
		Seq:        binary.BigEndian.Uint64(pkt[16:]),
		Sent:       int64(binary.BigEndian.Uint64(pkt[24:])),
	}
}

// ParseBeat reads a beat's fields without checking its MAC: the receiver
// needs the slot to find the key. Verify the datagram with VerifyBeat
// before trusting any of them.
func ParseBeat(pkt []byte) (Beat, error) {
	if len(pkt) != BeatSize || [4]byte(pkt[:4]) != beatMagic {
		return Beat{}, ErrBadBeat
	}
	for _, c := range pkt[32 : BeatSize-BeatMACSize] {
		if c != 0 {
			return Beat{}, ErrBadBeat
		}
	}
	return header(pkt), nil
}

// VerifyBeat reports whether pkt (a ParseBeat-able datagram) carries the
// MAC of key.
func VerifyBeat(pkt, key []byte) bool {
	return len(pkt) == BeatSize && verify([BeatSize]byte(pkt), key)
}

// Seal appends r, authenticated with key, to dst.
func (r BeatReply) Seal(dst, key []byte) []byte {
	p := putHeader(replyMagic, Beat{Slot: r.Slot, Generation: r.Generation, Seq: r.Seq, Sent: r.Sent})
	binary.BigEndian.PutUint64(p[32:], uint64(r.Answered))
	binary.BigEndian.PutUint64(p[40:], uint64(r.Period))
	return append(dst, seal(p, key)...)
}

// OpenBeatReply checks pkt's MAC under key and returns its fields.
func OpenBeatReply(pkt, key []byte) (BeatReply, error) {
	if len(pkt) != BeatSize || [4]byte(pkt[:4]) != replyMagic || !verify([BeatSize]byte(pkt), key) {
		return BeatReply{}, ErrBadBeat
	}
	b := header(pkt)
	return BeatReply{
		Slot: b.Slot, Generation: b.Generation, Seq: b.Seq, Sent: b.Sent,
		Answered: int64(binary.BigEndian.Uint64(pkt[32:])),
		Period:   int64(binary.BigEndian.Uint64(pkt[40:])),
	}, nil
}

func mac(p *[BeatSize]byte, key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(p[:BeatSize-BeatMACSize])
	return h.Sum(nil)[:BeatMACSize]
}

func seal(p [BeatSize]byte, key []byte) []byte {
	copy(p[BeatSize-BeatMACSize:], mac(&p, key))
	return p[:]
}

func verify(p [BeatSize]byte, key []byte) bool {
	return len(key) == BeatKeySize && hmac.Equal(p[BeatSize-BeatMACSize:], mac(&p, key))
}
