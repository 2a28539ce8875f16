package dispatcher

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc/codes"
)

func TestSessionMarksReady(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, _ := h.openSession(ctx, "n1", "")
	if msg.SessionId == "" || msg.Node.GetId() != "n1" || string(msg.RootCa) != "root" {
		t.Fatalf("first message %v", msg)
	}
	if len(msg.Managers) != 1 || msg.Managers[0].Addr != "198.18.0.1:2377" {
		t.Fatalf("managers %v", msg.Managers)
	}
	h.waitNode("n1", api.NodeStatus_READY)
	var n *api.Node
	h.store.View(func(tx raftstore.ReadTx) { n = tx.GetNode("n1") })
	if n.GetDescription().GetHostname() != "n1" {
		t.Errorf("description not stored: %v", n.GetDescription())
	}

	// A heartbeat names the period.
	resp, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId})
	if err != nil || resp.Period.AsDuration() != DefaultHeartbeatPeriod {
		t.Fatalf("heartbeat = %v, %v", resp, err)
	}
	// Another node cannot use n1's session.
	_, err = h.client.Heartbeat(as(ctx, "n2"), &api.HeartbeatRequest{SessionId: msg.SessionId})
	wantCode(t, err, codes.NotFound)
}

func TestSessionRefusals(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	s, err := h.client.Session(as(ctx, "stranger"), &api.SessionRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantCode(t, err, codes.NotFound)
	s, err = h.client.Session(ctx, &api.SessionRequest{}) // no identity
	if err == nil {
		_, err = s.Recv()
	}
	wantCode(t, err, codes.InvalidArgument)
	_, err = h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: "made-up"})
	wantCode(t, err, codes.NotFound)
}

func TestNotRunning(t *testing.T) {
	d, err := New(Config{Store: raftstore.NewMemoryStore(nil, nil), NodeID: nodeIDFromMetadata})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.openSession("n1", ""); err != ErrNotRunning {
		t.Fatalf("openSession before Run: %v", err)
	}
	if _, err := New(Config{NodeID: nodeIDFromMetadata}); err == nil {
		t.Fatal("New without a store")
	}
}

func TestNewSessionReplacesOld(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, firstStream := h.openSession(ctx, "n1", "")
	second, _ := h.openSession(ctx, "n1", "")
	if second.SessionId == first.SessionId {
		t.Fatal("same session ID after a new session")
	}
	_, err := firstStream.Recv()
	wantCode(t, err, codes.NotFound)
	_, err = h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: first.SessionId})
	wantCode(t, err, codes.NotFound)
	if _, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: second.SessionId}); err != nil {
		t.Fatal(err)
	}
	// Resuming the current session keeps its ID.
	third, _ := h.openSession(ctx, "n1", second.SessionId)
	if third.SessionId != second.SessionId {
		t.Fatalf("resume gave %s, want %s", third.SessionId, second.SessionId)
	}
}

func TestHeartbeatDeadline(t *testing.T) {
	h := newHarness(t, nil) // period 1 s, 3 missed: deadline 3 s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, stream := h.openSession(ctx, "n1", "")
	h.waitNode("n1", api.NodeStatus_READY)

	h.clock.Advance(2 * time.Second)
	if _, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId}); err != nil {
		t.Fatal(err)
	}
	// 4 s after the session, 2 s after the beat: the old 3 s deadline has
	// passed, the new one (5 s) not. Wait for the watcher to look and
	// re-arm, then check it left the node alone.
	h.clock.drainTimers()
	h.clock.Advance(2 * time.Second)
	h.clock.awaitTimer(t)
	if s := h.nodeState("n1"); s != api.NodeStatus_READY {
		t.Fatalf("node %v after a heartbeat within the deadline", s)
	}
	h.clock.Advance(1100 * time.Millisecond)
	h.waitNode("n1", api.NodeStatus_DOWN)

	// The session is over: its stream ends, its heartbeats are refused.
	if _, err := stream.Recv(); err == nil {
		t.Fatal("session stream still open after expiry")
	}
	_, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId})
	wantCode(t, err, codes.NotFound)

	// The node comes back: READY again, and the new session works.
	again, _ := h.openSession(ctx, "n1", msg.SessionId)
	if again.SessionId == msg.SessionId {
		t.Fatal("an expired session was resumed")
	}
	h.waitNode("n1", api.NodeStatus_READY)
	if _, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: again.SessionId}); err != nil {
		t.Fatal(err)
	}
}

// TestReadyNodesWithoutSessionGoDown: after a leader change, a node the
// store holds READY but that never opens a session here is marked DOWN.
func TestReadyNodesWithoutSessionGoDown(t *testing.T) {
	h := newHarness(t, nil)
	// m1 was seeded READY before Run: it has 2 x 3 s.
	h.clock.Advance(5 * time.Second)
	if s := h.nodeState("m1"); s != api.NodeStatus_READY {
		t.Fatalf("m1 is %v before its deadline", s)
	}
	h.clock.Advance(2 * time.Second)
	h.waitNode("m1", api.NodeStatus_DOWN)
}

func TestAssignmentsStream(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.seed(
		task("t1", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
		task("t2", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
		task("t3", "n1", api.TaskState_NEW, api.TaskState_RUNNING),
	)
	msg, _ := h.openSession(ctx, "n1", "")
	stream, err := h.client.Assignments(as(ctx, "n1"), &api.AssignmentsRequest{SessionId: msg.SessionId})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(wantType api.AssignmentsMessage_Type, applies string, want ...string) *api.AssignmentsMessage {
		t.Helper()
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(changeStrings(m.Changes))
		if m.Type != wantType || got != fmt.Sprint(want) || (applies != "" && m.AppliesTo != applies) {
			t.Fatalf("got %v %v applies_to %s, want %v %v applies_to %s", m.Type, got, m.AppliesTo, wantType, want, applies)
		}
		return m
	}
	m := recv(api.AssignmentsMessage_COMPLETE, "", "UPDATE t1 RUNNING")

	h.seed(task("t4", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING))
	m = recv(api.AssignmentsMessage_INCREMENTAL, m.ResultsIn, "UPDATE t4 RUNNING")
	h.updateTask("t1", func(tk *api.Task) { tk.DesiredState = api.TaskState_SHUTDOWN })
	m = recv(api.AssignmentsMessage_INCREMENTAL, m.ResultsIn, "UPDATE t1 SHUTDOWN")
	h.updateTask("t1", func(tk *api.Task) { tk.Status.State = api.TaskState_SHUTDOWN })
	m = recv(api.AssignmentsMessage_INCREMENTAL, m.ResultsIn, "REMOVE t1 NEW")
	// A status-only change (the agent's own report) is not echoed; the
	// next message is the deletion.
	h.updateTask("t4", func(tk *api.Task) { tk.Status.State = api.TaskState_RUNNING })
	h.updateTask("t2", func(tk *api.Task) { tk.DesiredState = api.TaskState_SHUTDOWN }) // n2's
	h.updateTask("t3", func(tk *api.Task) { tk.Status.State = api.TaskState_ASSIGNED })
	m = recv(api.AssignmentsMessage_INCREMENTAL, m.ResultsIn, "UPDATE t3 RUNNING")
	if err := h.store.Update(ctx, func(tx raftstore.WriteTx) error { return tx.Delete(raftstore.KindTask, "t4") }); err != nil {
		t.Fatal(err)
	}
	recv(api.AssignmentsMessage_INCREMENTAL, m.ResultsIn, "REMOVE t4 NEW")

	// A replaced session ends the stream.
	h.openSession(ctx, "n1", "")
	_, err = stream.Recv()
	wantCode(t, err, codes.NotFound)
}

// blockingStream is an Assignments server stream whose Send waits for the
// test, so the test can make the watch fall behind.
type blockingStream struct {
	api.Dispatcher_AssignmentsServer
	ctx     context.Context
	sending chan struct{}
	sent    chan *api.AssignmentsMessage
}

func (s *blockingStream) Context() context.Context { return s.ctx }
func (s *blockingStream) Send(m *api.AssignmentsMessage) error {
	s.sending <- struct{}{}
	select {
	case s.sent <- m:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func TestAssignmentsResyncAfterOverflow(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WatchBuffer = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, _ := h.openSession(ctx, "n1", "")
	// Server side: the handler reads the node ID from incoming metadata.
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	stream := &blockingStream{ctx: incoming(sctx, "n1"), sending: make(chan struct{}, 10), sent: make(chan *api.AssignmentsMessage)}
	done := make(chan error, 1)
	go func() { done <- h.d.Assignments(&api.AssignmentsRequest{SessionId: msg.SessionId}, stream) }()

	next := func() *api.AssignmentsMessage {
		t.Helper()
		select {
		case m := <-stream.sent:
			return m
		case err := <-done:
			t.Fatalf("stream ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
		return nil
	}
	<-stream.sending
	if m := next(); m.Type != api.AssignmentsMessage_COMPLETE || len(m.Changes) != 0 {
		t.Fatalf("first message %v", m)
	}
	h.seed(task("a", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING))
	<-stream.sending // blocked sending a's change: the watch is not read now
	h.seed(task("b", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING))
	h.seed(task("c", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING)) // overflows a buffer of 1
	if m := next(); m.Type != api.AssignmentsMessage_INCREMENTAL || fmt.Sprint(changeStrings(m.Changes)) != "[UPDATE a RUNNING]" {
		t.Fatalf("second message %v", m)
	}
	<-stream.sending
	m := next()
	if m.Type != api.AssignmentsMessage_COMPLETE || fmt.Sprint(changeStrings(m.Changes)) != "[UPDATE a RUNNING UPDATE b RUNNING UPDATE c RUNNING]" {
		t.Fatalf("after overflow: %v %v, want a COMPLETE set of a, b, c", m.Type, changeStrings(m.Changes))
	}
	scancel()
	if err := <-done; err == nil {
		t.Fatal("Assignments returned nil after its stream ended")
	}
}

func TestStatusUpdatesBatched(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HeartbeatPeriod = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 1000
	var tasks []raftstore.Object
	for i := range n {
		tasks = append(tasks, task(fmt.Sprintf("t%04d", i), "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING))
	}
	h.seed(tasks...)
	msg, _ := h.openSession(ctx, "n1", "")
	h.waitNode("n1", api.NodeStatus_READY)

	before := h.prop.count()
	h.clock.drainTimers()
	took := h.d.batcher.took.Load()
	// Ten agents' calls at once: each returns only once its updates are
	// committed.
	acked := make(chan error, 10)
	for rpc := range 10 {
		req := &api.UpdateTaskStatusRequest{SessionId: msg.SessionId}
		for i := rpc * 100; i < (rpc+1)*100; i++ {
			req.Updates = append(req.Updates, &api.TaskStatusUpdate{TaskId: fmt.Sprintf("t%04d", i), Status: &api.TaskStatus{State: api.TaskState_RUNNING}})
		}
		go func() {
			_, err := h.client.UpdateTaskStatus(as(ctx, "n1"), req)
			acked <- err
		}()
	}
	// Nothing is written, and no call acknowledged, before the interval
	// passes...
	h.clock.awaitTimer(t)
	h.waitBatcherTook(took + 10)
	select {
	case got := <-h.flushed:
		t.Fatalf("flushed %d before the interval", got)
	case err := <-acked:
		t.Fatalf("a call returned (%v) before its updates were written", err)
	default:
	}
	// ...then everything queued is.
	h.clock.Advance(DefaultBatchInterval)
	if got := <-h.flushed; got != n {
		t.Fatalf("flush wrote %d, want %d", got, n)
	}
	for range 10 {
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
	}
	if tx := h.prop.count() - before; tx != 1 {
		t.Fatalf("%d status updates took %d transactions, want 1", n, tx)
	}
	h.store.View(func(tx raftstore.ReadTx) {
		for _, tk := range tx.TasksOnNode("n1") {
			if tk.Status.State != api.TaskState_RUNNING {
				t.Fatalf("task %s is %v", tk.Id, tk.Status.State)
			}
		}
	})
}

// waitBatcherTook waits until the batcher has taken n requests in all (it
// merges each before it can look at its timer again).
func (h *harness) waitBatcherTook(n int64) {
	deadline := time.Now().Add(5 * time.Second)
	for h.d.batcher.took.Load() < n {
		if time.Now().After(deadline) {
			h.t.Fatal("batcher does not read its queue")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStatusFlushAtMax(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BatchMax = 100; c.HeartbeatPeriod = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tasks []raftstore.Object
	req := &api.UpdateTaskStatusRequest{}
	for i := range 150 {
		id := fmt.Sprintf("t%04d", i)
		tasks = append(tasks, task(id, "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING))
		req.Updates = append(req.Updates, &api.TaskStatusUpdate{TaskId: id, Status: &api.TaskStatus{State: api.TaskState_ACCEPTED}})
	}
	h.seed(tasks...)
	msg, _ := h.openSession(ctx, "n1", "")
	req.SessionId = msg.SessionId
	if _, err := h.client.UpdateTaskStatus(as(ctx, "n1"), req); err != nil {
		t.Fatal(err)
	}
	// No clock advance: reaching BatchMax writes at once.
	select {
	case got := <-h.flushed:
		if got != 150 {
			t.Fatalf("flush wrote %d, want 150", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no flush at BatchMax")
	}
}

func TestStatusUpdateValidation(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HeartbeatPeriod = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.seed(
		task("running", "n1", api.TaskState_RUNNING, api.TaskState_RUNNING),
		task("new", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
		task("theirs", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
	)
	msg, _ := h.openSession(ctx, "n1", "")
	up := func(id string, s api.TaskState) *api.TaskStatusUpdate {
		return &api.TaskStatusUpdate{TaskId: id, Status: &api.TaskStatus{State: s}}
	}
	// Another node's task refuses the request; the session lives on.
	_, err := h.client.UpdateTaskStatus(as(ctx, "n1"), &api.UpdateTaskStatusRequest{SessionId: msg.SessionId,
		Updates: []*api.TaskStatusUpdate{up("new", api.TaskState_ACCEPTED), up("theirs", api.TaskState_ACCEPTED)}})
	wantCode(t, err, codes.FailedPrecondition)
	// A stale session is refused.
	_, err = h.client.UpdateTaskStatus(as(ctx, "n1"), &api.UpdateTaskStatusRequest{SessionId: "old"})
	wantCode(t, err, codes.NotFound)

	// A backward update is ignored, not an error; the forward one lands.
	h.clock.drainTimers()
	took := h.d.batcher.took.Load()
	acked := make(chan error, 1)
	go func() {
		_, err := h.client.UpdateTaskStatus(as(ctx, "n1"), &api.UpdateTaskStatusRequest{SessionId: msg.SessionId,
			Updates: []*api.TaskStatusUpdate{up("running", api.TaskState_STARTING), up("new", api.TaskState_PREPARING), up("gone", api.TaskState_RUNNING)}})
		acked <- err
	}()
	h.clock.awaitTimer(t)
	h.waitBatcherTook(took + 1)
	h.clock.Advance(DefaultBatchInterval)
	if got := <-h.flushed; got != 1 {
		t.Fatalf("flush wrote %d, want 1", got)
	}
	if err := <-acked; err != nil {
		t.Fatalf("backward update: %v", err)
	}
	h.store.View(func(tx raftstore.ReadTx) {
		if s := tx.GetTask("running").Status.State; s != api.TaskState_RUNNING {
			t.Errorf("running went back to %v", s)
		}
		if s := tx.GetTask("new").Status.State; s != api.TaskState_PREPARING {
			t.Errorf("new is %v, want PREPARING", s)
		}
		if s := tx.GetTask("theirs").Status.State; s != api.TaskState_ASSIGNED {
			t.Errorf("theirs is %v", s)
		}
	})
	if _, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId}); err != nil {
		t.Fatalf("session died: %v", err)
	}
}

func TestSessionFollowsNodeAndManagers(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, stream := h.openSession(ctx, "n1", "")
	h.waitNode("n1", api.NodeStatus_READY)
	h.seed(&api.Node{Id: "m2", ManagerStatus: &api.ManagerStatus{Addr: "198.18.0.2:2377"}})
	m, err := stream.Recv()
	if err != nil || len(m.Managers) != 2 || m.SessionId != msg.SessionId {
		t.Fatalf("after a manager joined: %v, %v", m, err)
	}
	// A worker that joins changes nothing the agent is told.
	h.seed(&api.Node{Id: "w9"})
	if err := h.store.Update(ctx, func(tx raftstore.WriteTx) error {
		n := tx.GetNode("n1")
		n.Spec = &api.NodeSpec{Availability: api.NodeSpec_DRAIN}
		return tx.Update(n)
	}); err != nil {
		t.Fatal(err)
	}
	m, err = stream.Recv()
	if err != nil || m.Node.GetSpec().GetAvailability() != api.NodeSpec_DRAIN {
		t.Fatalf("after a node update: %v, %v", m, err)
	}
	// Removing the node ends its session.
	if err := h.store.Update(ctx, func(tx raftstore.WriteTx) error { return tx.Delete(raftstore.KindNode, "n1") }); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.NotFound)
	_, err = h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId})
	wantCode(t, err, codes.NotFound)
}

// TestSessionOpenDoesNotWaitForOtherNodesWrites: while one node's READY
// write is held (a slow raft round), another node's session opens. With one
// lock for every node's status write, all session opens queued behind each
// other's raft writes: after a leader change 1,000 reconnecting agents took
// 1,000 rounds in turn, and the last ones' grace ran out first.
func TestSessionOpenDoesNotWaitForOtherNodesWrites(t *testing.T) {
	h := newHarness(t, nil)
	release, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.prop.gate = func(p *api.Proposal) {
		for _, a := range p.GetActions() {
			if a.GetNode().GetId() == "n1" {
				once.Do(func() { close(held) })
				<-release
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n1 := make(chan error, 1)
	go func() {
		stream, err := h.client.Session(as(ctx, "n1"), &api.SessionRequest{Description: &api.NodeDescription{Hostname: "n1"}})
		if err == nil {
			_, err = stream.Recv()
		}
		n1 <- err
	}()
	<-held
	opened := make(chan error, 1)
	go func() {
		stream, err := h.client.Session(as(ctx, "n2"), &api.SessionRequest{Description: &api.NodeDescription{Hostname: "n2"}})
		if err == nil {
			_, err = stream.Recv()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("n2's session: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("n2's session waited for n1's READY write")
	}
	close(release)
	if err := <-n1; err != nil {
		t.Fatalf("n1's session: %v", err)
	}
	h.waitNode("n1", api.NodeStatus_READY)
	h.waitNode("n2", api.NodeStatus_READY)
}

// TestAssignmentsCarrySecrets: a task's secrets and configs, data
// included, go with its assignment to its node, and only there: another
// node's stream never carries them.
func TestAssignmentsCarrySecrets(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	withRefs := func(tk *api.Task) *api.Task {
		tk.Spec = &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox",
			Secrets: []*api.SecretReference{{SecretId: "s1", SecretName: "pw"}, {SecretId: "gone", SecretName: "old"}},
			Configs: []*api.ConfigReference{{ConfigId: "c1", ConfigName: "conf"}}}}
		return tk
	}
	h.seed(
		&api.Secret{Id: "s1", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("hunter2")}},
		&api.Config{Id: "c1", Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "conf"}, Data: []byte("x=1")}},
		withRefs(task("t1", "n1", api.TaskState_ASSIGNED, api.TaskState_RUNNING)),
		task("t2", "n2", api.TaskState_ASSIGNED, api.TaskState_RUNNING),
	)
	stream := func(node string) api.Dispatcher_AssignmentsClient {
		msg, _ := h.openSession(ctx, node, "")
		s, err := h.client.Assignments(as(ctx, node), &api.AssignmentsRequest{SessionId: msg.SessionId})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	n1, n2 := stream("n1"), stream("n2")
	m, err := n1.Recv()
	if err != nil || len(m.Changes) != 1 {
		t.Fatalf("n1: %v %v", m, err)
	}
	c := m.Changes[0]
	if len(c.Secrets) != 1 || string(c.Secrets[0].GetSpec().GetData()) != "hunter2" || len(c.Configs) != 1 || string(c.Configs[0].GetSpec().GetData()) != "x=1" {
		t.Fatalf("t1's assignment carries secrets %v, configs %v", c.Secrets, c.Configs)
	}
	m2, err := n2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m2.Changes {
		if len(c.Secrets)+len(c.Configs) > 0 {
			t.Fatalf("n2 received %v", c)
		}
	}
	// An incremental change resends them with the task.
	h.updateTask("t1", func(tk *api.Task) { tk.DesiredState = api.TaskState_SHUTDOWN })
	if m, err = n1.Recv(); err != nil || len(m.Changes) != 1 || len(m.Changes[0].Secrets) != 1 {
		t.Fatalf("incremental: %v %v", m, err)
	}
}
