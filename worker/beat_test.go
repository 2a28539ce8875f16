package worker

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-project/shoal/api"
)

// grpcBeats counts the heartbeats that went over gRPC.
type grpcBeats struct {
	Dispatcher
	n atomic.Int64
}

func (g *grpcBeats) Heartbeat(context.Context, *api.HeartbeatRequest, ...grpc.CallOption) (*api.HeartbeatResponse, error) {
	g.n.Add(1)
	return &api.HeartbeatResponse{Period: durationpb.New(700 * time.Millisecond)}, nil
}

// beatResponder stands for a manager's fast path: it answers each beat
// under answerKey (the session's key, or not), or stays silent.
func beatResponder(t *testing.T, key, answerKey []byte, silent bool) (port int) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 256)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b, err := api.ParseBeat(buf[:n])
			if err != nil || !api.VerifyBeat(buf[:n], key) || silent {
				continue
			}
			r := api.BeatReply{Slot: b.Slot, Generation: b.Generation, Seq: b.Seq, Sent: b.Sent,
				Answered: time.Now().UnixNano(), Period: int64(300 * time.Millisecond)}
			c.WriteToUDPAddrPort(r.Seal(nil, answerKey), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func fastFor(t *testing.T, port int, key []byte) *fastBeater {
	t.Helper()
	f, err := newFastBeater(&api.SessionMessage{
		BeatAddr: "127.0.0.1:" + strconv.Itoa(port), BeatSlot: 2, BeatGeneration: 5, BeatKey: key})
	if err != nil || f == nil {
		t.Fatalf("newFastBeater: %v, %v", f, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFastBeatAnsweredWithoutGRPC(t *testing.T) {
	key := bytes.Repeat([]byte{1}, api.BeatKeySize)
	f := fastFor(t, beatResponder(t, key, key, false), key)
	g := &grpcBeats{}
	for range 3 {
		p, err := heartbeat(context.Background(), g, "s1", f, time.Second)
		if err != nil || p != 300*time.Millisecond {
			t.Fatalf("heartbeat: period %v, %v; want the fast path's 300ms", p, err)
		}
	}
	if n := g.n.Load(); n != 0 {
		t.Fatalf("%d heartbeats went over gRPC while the fast path answered", n)
	}
}

// An unanswered fast path, or answers that are not authentic, fall back to
// gRPC at once, and after fastMisses in a row the fast path is left.
func TestFastBeatFallsBackToGRPC(t *testing.T) {
	key := bytes.Repeat([]byte{1}, api.BeatKeySize)
	for name, port := range map[string]int{
		"silent":            beatResponder(t, key, key, true),
		"answers forged":    beatResponder(t, key, bytes.Repeat([]byte{2}, api.BeatKeySize), false),
		"nothing listening": func() int { p := beatResponder(t, key, key, true); return p + 7 }(),
	} {
		f := fastFor(t, port, key)
		g := &grpcBeats{}
		for i := 1; i <= fastMisses; i++ {
			if !f.usable() {
				t.Fatalf("%s: fast path left after %d misses", name, i-1)
			}
			p, err := heartbeat(context.Background(), g, "s1", f, 200*time.Millisecond)
			if err != nil || p != 700*time.Millisecond {
				t.Fatalf("%s: heartbeat: period %v, %v; want gRPC's 700ms", name, p, err)
			}
		}
		if g.n.Load() != fastMisses || f.usable() {
			t.Fatalf("%s: %d gRPC heartbeats, fast path usable %v; want %d and false", name, g.n.Load(), f.usable(), fastMisses)
		}
	}
}

func TestNoFastBeaterWithoutOffer(t *testing.T) {
	for _, m := range []*api.SessionMessage{
		{},
		{BeatAddr: "127.0.0.1:2377", BeatGeneration: 1, BeatKey: []byte("short")},
		{BeatAddr: "127.0.0.1:2377", BeatKey: bytes.Repeat([]byte{1}, api.BeatKeySize)},
	} {
		if f, err := newFastBeater(m); f != nil || err != nil {
			t.Fatalf("offer %+v: beater %v, %v", m, f, err)
		}
	}
}
