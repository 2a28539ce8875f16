package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/shoal-project/shoal/api"
)

// fastMisses is how many fast-path beats in a row may go unanswered before
// the session beats over gRPC only: the manager's answering process is
// gone, or a firewall drops the datagrams.
const fastMisses = 3

// fastBeater sends a session's heartbeats through the manager's fast path
// (package manager/heartbeat): UDP datagrams authenticated with the
// session's key, answered by a process of the manager's own. A beat that is
// not answered in half a period is sent again over gRPC, which also says
// when the session has ended (the fast path answers only live sessions).
type fastBeater struct {
	conn   *net.UDPConn
	key    []byte
	slot   uint32
	gen    uint64
	seq    uint64
	misses int
	buf    []byte
}

// newFastBeater opens the fast path the session message m offers; nil if
// it offers none.
func newFastBeater(m *api.SessionMessage) (*fastBeater, error) {
	if m.GetBeatAddr() == "" || len(m.GetBeatKey()) != api.BeatKeySize || m.GetBeatGeneration() == 0 {
		return nil, nil
	}
	raddr, err := net.ResolveUDPAddr("udp", m.GetBeatAddr())
	if err != nil {
		return nil, fmt.Errorf("heartbeat fast path: %w", err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("heartbeat fast path: %w", err)
	}
	return &fastBeater{conn: conn, key: m.GetBeatKey(), slot: m.GetBeatSlot(), gen: m.GetBeatGeneration(),
		buf: make([]byte, 2*api.BeatSize)}, nil
}

// Close closes the beater's socket (also to end a beat in flight).
func (f *fastBeater) Close() error { return f.conn.Close() }

// usable reports whether the fast path is still worth trying.
func (f *fastBeater) usable() bool { return f.misses < fastMisses }

// beat sends one beat and waits up to timeout for its answer; it returns
// the period the manager names. An error is a beat not answered in time (or
// a socket error): the caller beats over gRPC instead.
func (f *fastBeater) beat(timeout time.Duration) (time.Duration, error) {
	f.seq++
	b := api.Beat{Slot: f.slot, Generation: f.gen, Seq: f.seq, Sent: time.Now().UnixNano()}
	if _, err := f.conn.Write(b.Seal(nil, f.key)); err != nil {
		f.misses++
		return 0, err
	}
	deadline := time.Now().Add(timeout)
	if err := f.conn.SetReadDeadline(deadline); err != nil {
		f.misses++
		return 0, err
	}
	for {
		n, err := f.conn.Read(f.buf)
		if err != nil {
			f.misses++
			return 0, err
		}
		r, err := api.OpenBeatReply(f.buf[:n], f.key)
		if err != nil || r.Slot != f.slot || r.Generation != f.gen || r.Seq != f.seq {
			continue // an earlier beat's late answer, or not ours
		}
		f.misses = 0
		if r.Period <= 0 {
			return 0, errors.New("heartbeat fast path: answer without a period")
		}
		return time.Duration(r.Period), nil
	}
}

// heartbeat beats once: through the fast path when there is one that
// answers, else over gRPC. It returns the period to wait.
func heartbeat(ctx context.Context, c Dispatcher, sid string, fast *fastBeater, period time.Duration) (time.Duration, error) {
	if fast != nil && fast.usable() {
		if p, err := fast.beat(period / 2); err == nil {
			return p, nil
		}
	}
	// A heartbeat that outlasts the manager's longest grace is lost
	// anyway: give up on that manager instead of waiting on TCP.
	hctx, cancel := context.WithTimeout(ctx, heartbeatPeriods*period)
	defer cancel()
	resp, err := c.Heartbeat(hctx, &api.HeartbeatRequest{SessionId: sid})
	if err != nil {
		return 0, sessionErr("heartbeat", err)
	}
	if p := resp.GetPeriod(); p != nil && p.AsDuration() > 0 {
		return p.AsDuration(), nil
	}
	return period, nil
}
