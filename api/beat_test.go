package api

import (
	"bytes"
	"testing"
)

func TestBeatRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, BeatKeySize)
	b := Beat{Slot: 3, Generation: 9, Seq: 42, Sent: 1234567890}
	pkt := b.Seal(nil, key)
	if len(pkt) != BeatSize {
		t.Fatalf("beat is %d bytes, want %d", len(pkt), BeatSize)
	}
	got, err := ParseBeat(pkt)
	if err != nil || got != b {
		t.Fatalf("ParseBeat = %+v, %v; want %+v", got, err, b)
	}
	if !VerifyBeat(pkt, key) {
		t.Fatal("VerifyBeat refuses its own beat")
	}
	r := BeatReply{Slot: 3, Generation: 9, Seq: 42, Sent: 1234567890, Answered: 1234567999, Period: 1e9}
	rp := r.Seal(nil, key)
	gr, err := OpenBeatReply(rp, key)
	if err != nil || gr != r {
		t.Fatalf("OpenBeatReply = %+v, %v; want %+v", gr, err, r)
	}
}

// Every bit of a datagram is covered: a beat or an answer changed anywhere,
// sealed under another key, or of the other kind, is refused.
func TestBeatRefusesForgeries(t *testing.T) {
	key := bytes.Repeat([]byte{7}, BeatKeySize)
	other := bytes.Repeat([]byte{8}, BeatKeySize)
	pkt := Beat{Slot: 1, Generation: 2, Seq: 3, Sent: 4}.Seal(nil, key)
	reply := BeatReply{Slot: 1, Generation: 2, Seq: 3, Sent: 4, Answered: 5, Period: 6}.Seal(nil, key)
	for i := range BeatSize {
		for _, bit := range []byte{1, 0x80} {
			p := bytes.Clone(pkt)
			p[i] ^= bit
			if _, err := ParseBeat(p); err == nil && VerifyBeat(p, key) {
				t.Fatalf("beat with byte %d changed (^%#x) accepted", i, bit)
			}
			r := bytes.Clone(reply)
			r[i] ^= bit
			if _, err := OpenBeatReply(r, key); err == nil {
				t.Fatalf("answer with byte %d changed (^%#x) accepted", i, bit)
			}
		}
	}
	if VerifyBeat(pkt, other) {
		t.Fatal("beat verified under another key")
	}
	if _, err := OpenBeatReply(reply, other); err == nil {
		t.Fatal("answer opened under another key")
	}
	if _, err := ParseBeat(reply); err == nil {
		t.Fatal("an answer parsed as a beat")
	}
	if _, err := OpenBeatReply(pkt, key); err == nil {
		t.Fatal("a beat opened as an answer")
	}
	for _, n := range []int{0, 1, BeatSize - 1, BeatSize + 1, 1500} {
		p := make([]byte, n)
		copy(p, pkt)
		if _, err := ParseBeat(p); err == nil && VerifyBeat(p, key) {
			t.Fatalf("a %d-byte datagram accepted", n)
		}
	}
	if VerifyBeat(pkt, key[:16]) {
		t.Fatal("verified under a short key")
	}
}
