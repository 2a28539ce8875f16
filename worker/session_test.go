package worker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-project/shoal/api"
)

// slowConn reads at most rate bytes per second: the agent's end of a
// connection on a node too starved to drain its socket quickly (issue 9
// item 10: a load average above 100).
type slowConn struct {
	net.Conn
	rate int // bytes per second
}

func (c slowConn) Read(p []byte) (int, error) {
	const chunk = 16 << 10
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := c.Conn.Read(p)
	time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
	return n, err
}

// beatManager is a fakeManager that records when each heartbeat arrived.
type beatManager struct {
	*fakeManager
	beatMu sync.Mutex
	beatAt []time.Time
}

func (b *beatManager) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	b.beatMu.Lock()
	b.beatAt = append(b.beatAt, time.Now())
	b.beatMu.Unlock()
	return &api.HeartbeatResponse{Period: durationpb.New(100 * time.Millisecond)}, nil
}

// maxGap is the longest time between two heartbeats that arrived in
// [from, to].
func (b *beatManager) maxGap(from, to time.Time) time.Duration {
	b.beatMu.Lock()
	defer b.beatMu.Unlock()
	var gap time.Duration
	last := from
	for _, at := range b.beatAt {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

// TestHeartbeatNotBehindAssignments: a complete set of assignments of
// two megabytes, sent to an agent that drains its socket slowly (256 KiB/s),
// does not delay its heartbeats past the grace of a node that beats on
// time: they have their own connection. With the heartbeats on the
// assignments' connection their answers queue behind the assignments'
// frames (the test failed so: heartbeats 634 ms apart, 220 ms with their
// own connection).
func TestHeartbeatNotBehindAssignments(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bm := &beatManager{fakeManager: &fakeManager{assign: make(chan *api.AssignmentsMessage, 1), statuses: map[string]*api.TaskStatus{}}}
	srv := grpc.NewServer(grpc.MaxSendMsgSize(64 << 20))
	api.RegisterDispatcherServer(srv, bm)
	go srv.Serve(l)
	defer srv.Stop()

	dial := func(ctx context.Context, addr string) (Conn, error) {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
				if err != nil {
					return nil, err
				}
				return slowConn{Conn: c, rate: 256 << 10}, nil
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		return clientConn{api.NewDispatcherClient(cc), cc}, nil
	}
	rt := &gatedRuntime{gate: make(chan struct{}), cs: map[string]*ContainerState{}}
	a, err := New(Config{Managers: []string{l.Addr().String()}, Dial: dial, Runtime: rt, RetryDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Wait for the session's heartbeats, then send ~6 MB of tasks (a 2 KB
	// environment each, as a service with some configuration has).
	deadline := time.Now().Add(10 * time.Second)
	for {
		bm.beatMu.Lock()
		n := len(bm.beatAt)
		bm.beatMu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeats from the agent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	env := []string{"X=" + strings.Repeat("x", 2000)}
	var ts []*api.Task
	for i := 0; i < 1000; i++ {
		task := busyboxTask(fmt.Sprint("t", i), api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "60")
		task.Spec.Container.Env = env
		ts = append(ts, task)
	}
	from := time.Now()
	bm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "1", ts...)
	// The set has arrived when the agent runs a goroutine per task.
	for len(a.Tasks()) < len(ts) {
		if time.Since(from) > 60*time.Second {
			t.Fatalf("the assignments did not arrive in 60 s (%d tasks)", len(a.Tasks()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	to := time.Now()
	gap := bm.maxGap(from, to)
	t.Logf("assignments took %v to arrive; longest gap between heartbeats meanwhile %v (period 100 ms)", to.Sub(from).Round(time.Millisecond), gap.Round(time.Millisecond))
	if to.Sub(from) < time.Second {
		t.Fatalf("the assignments arrived in %v: the link was not slow, the test shows nothing", to.Sub(from))
	}
	// Three periods is the grace of a node that beats on time: a longer
	// gap would have it declared down by a manager with the fixed grace.
	if gap > 3*100*time.Millisecond {
		t.Fatalf("heartbeats %v apart while the assignments arrived (period 100 ms): they queued behind them", gap.Round(time.Millisecond))
	}
}
