package dispatcher

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// fakeClock moves only when the test advances it. newTimer tells the test
// that some goroutine started waiting, so it advances after, not before.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	timers   []fakeTimer
	newTimer chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), newTimer: make(chan struct{}, 1000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	}
	select {
	case c.newTimer <- struct{}{}:
	default:
	}
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			t.ch <- c.now
		}
	}
	c.timers = kept
}

// drainTimers forgets earlier timer notifications.
func (c *fakeClock) drainTimers() {
	for {
		select {
		case <-c.newTimer:
		default:
			return
		}
	}
}

// awaitTimer waits until some goroutine starts a new timer.
func (c *fakeClock) awaitTimer(t *testing.T) {
	t.Helper()
	select {
	case <-c.newTimer:
	case <-time.After(5 * time.Second):
		t.Fatal("no goroutine started a timer")
	}
}

// countingProposer applies each proposal as the next raft entry and counts
// them: one proposal is one store transaction.
type countingProposer struct {
	mu    sync.Mutex
	store *raftstore.MemoryStore
	index uint64
	n     int
	// gate, if set before the harness runs, is called with each proposal
	// before it is applied: a test holds a write there as a slow raft
	// round would.
	gate func(*api.Proposal)
}

func (p *countingProposer) Propose(_ context.Context, prop *api.Proposal) error {
	if p.gate != nil {
		p.gate(prop)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.index++
	p.n++
	return p.store.Apply(p.index, &api.ProposalBatch{Proposals: []*api.Proposal{proto.Clone(prop).(*api.Proposal)}})[0]
}

func (p *countingProposer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// nodeIDKey is the metadata key the tests' NodeID reads in place of the
// peer's certificate.
const nodeIDKey = "test-node-id"

func nodeIDFromMetadata(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(nodeIDKey); len(v) == 1 && v[0] != "" {
		return v[0], nil
	}
	return "", api.Wrap(api.ErrInvalidArgument, errors.New("no node identity"))
}

// harness is a running Dispatcher behind a bufconn gRPC server, over an
// in-memory store.
type harness struct {
	t       *testing.T
	store   *raftstore.MemoryStore
	prop    *countingProposer
	clock   *fakeClock
	d       *Dispatcher
	client  api.DispatcherClient
	flushed chan int
}

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), prop: &countingProposer{}, flushed: make(chan int, 100)}
	h.store = raftstore.NewMemoryStore(h.prop, h.clock.Now)
	h.prop.store = h.store
	cfg := Config{
		Store: h.store, NodeID: nodeIDFromMetadata, Clock: h.clock, RootCA: []byte("root"),
		OnStatusFlush: func(n int) { h.flushed <- n },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	h.seed(
		&api.Node{Id: "m1", Status: &api.NodeStatus{State: api.NodeStatus_READY}, ManagerStatus: &api.ManagerStatus{Addr: "198.18.0.1:2377", Leader: true}},
		&api.Node{Id: "n1", Status: &api.NodeStatus{}},
		&api.Node{Id: "n2", Status: &api.NodeStatus{}},
	)

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = d.Run(ctx) }()

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	api.RegisterDispatcherServer(srv, d)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.client = api.NewDispatcherClient(conn)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		<-runDone
		srv.Stop()
	})
	// Calls fail with Unavailable until Run has started.
	h.waitRunning()
	return h
}

func (h *harness) waitRunning() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.d.mu.Lock()
		running := h.d.runCtx != nil
		h.d.mu.Unlock()
		if running {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("dispatcher did not start")
		}
		time.Sleep(time.Millisecond)
	}
}

// seed creates objects in one transaction.
func (h *harness) seed(objs ...raftstore.Object) {
	h.t.Helper()
	if err := h.store.Update(context.Background(), func(tx raftstore.WriteTx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
}

// updateTask changes a stored task.
func (h *harness) updateTask(id string, fn func(*api.Task)) {
	h.t.Helper()
	if err := h.store.Update(context.Background(), func(tx raftstore.WriteTx) error {
		tk := tx.GetTask(id)
		if tk == nil {
			return errors.New("no task " + id)
		}
		fn(tk)
		return tx.Update(tk)
	}); err != nil {
		h.t.Fatal(err)
	}
}

// as returns a context carrying node's identity.
func as(ctx context.Context, node string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, nodeIDKey, node)
}

// openSession opens node's session and returns its first message and the
// stream.
func (h *harness) openSession(ctx context.Context, node, resume string) (*api.SessionMessage, api.Dispatcher_SessionClient) {
	h.t.Helper()
	stream, err := h.client.Session(as(ctx, node), &api.SessionRequest{SessionId: resume, Description: &api.NodeDescription{Hostname: node}})
	if err != nil {
		h.t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		h.t.Fatalf("session of %s: %v", node, err)
	}
	return msg, stream
}

// waitNode waits, through a store watch (no polling), until node's state is
// want.
func (h *harness) waitNode(id string, want api.NodeStatus_State) {
	h.t.Helper()
	var state api.NodeStatus_State
	w := h.store.ViewAndWatch(0, func(tx raftstore.ReadTx) { state = tx.GetNode(id).GetStatus().GetState() }, raftstore.KindNode)
	defer w.Close()
	timeout := time.After(5 * time.Second)
	for state != want {
		select {
		case b, ok := <-w.C():
			if !ok {
				h.t.Fatalf("watch ended: %v", w.Err())
			}
			for _, e := range b.Events {
				if e.Object != nil && e.Object.GetId() == id {
					state = e.Object.(*api.Node).GetStatus().GetState()
				}
			}
		case <-timeout:
			h.t.Fatalf("node %s is %v, want %v", id, state, want)
		}
	}
}

func (h *harness) nodeState(id string) api.NodeStatus_State {
	var s api.NodeStatus_State
	h.store.View(func(tx raftstore.ReadTx) { s = tx.GetNode(id).GetStatus().GetState() })
	return s
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want code %v", err, code)
	}
}

// incoming is ctx as a server handler sees a call from node.
func incoming(ctx context.Context, node string) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.Pairs(nodeIDKey, node))
}
