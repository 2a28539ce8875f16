package dispatcher

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// TestHeartbeatNotBehindStore: a heartbeat is answered while the store is
// wedged (a reader holds it and a writer waits, so every new reader waits
// too, as behind the apply of a large raft entry): the handler reads no
// store and takes only the dispatcher's own lock, which nothing holds across
// a store call. A status report, which must read its tasks, waits; it
// proves the store really was wedged.
func TestHeartbeatNotBehindStore(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, _ := h.openSession(ctx, "n1", "")
	h.waitNode("n1", api.NodeStatus_READY)

	release := make(chan struct{})
	held := make(chan struct{})
	go h.store.View(func(raftstore.ReadTx) { close(held); <-release })
	<-held
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		_ = h.store.Update(context.Background(), func(tx raftstore.WriteTx) error {
			return tx.Create(&api.Node{Id: "n3", Status: &api.NodeStatus{}})
		})
	}()
	// Wait until a new reader is blocked: the writer is queued.
	for {
		got := make(chan struct{})
		go func() { h.store.View(func(raftstore.ReadTx) {}); close(got) }()
		select {
		case <-got:
			time.Sleep(5 * time.Millisecond)
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	defer func() { close(release); <-writerDone }()

	reported := make(chan error, 1)
	go func() {
		_, err := h.client.UpdateTaskStatus(as(ctx, "n1"), &api.UpdateTaskStatusRequest{SessionId: msg.SessionId,
			Updates: []*api.TaskStatusUpdate{{TaskId: "none", Status: &api.TaskStatus{State: api.TaskState_RUNNING}}}})
		reported <- err
	}()
	for i := 0; i < 5; i++ {
		start := time.Now()
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := h.client.Heartbeat(as(hctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId})
		hcancel()
		if err != nil {
			t.Fatalf("heartbeat while the store is wedged: %v (after %v)", err, time.Since(start))
		}
	}
	select {
	case err := <-reported:
		t.Fatalf("a status report was answered (%v) while the store was wedged: the test shows nothing", err)
	default:
	}
}

// TestHeartbeatLatencyUnderStoreLoad measures heartbeats answered while the
// store applies a stream of 1,000-task writes (a scale-up), and beside them
// a bare store read, which is what the manager's per-call authorization
// (manager/rpcauth.go, not this package) adds to every call. It fails only
// if a heartbeat takes a heartbeat period.
func TestHeartbeatLatencyUnderStoreLoad(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg, _ := h.openSession(ctx, "n1", "")
	h.waitNode("n1", api.NodeStatus_READY)

	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan int)
	go func() {
		n := 0
		for loadCtx.Err() == nil {
			_ = h.store.Update(loadCtx, func(tx raftstore.WriteTx) error {
				for i := 0; i < 1000; i++ {
					task := &api.Task{Id: fmt.Sprintf("t%d-%d", n, i), ServiceId: "s", NodeId: "n1", DesiredState: api.TaskState_RUNNING,
						Status: &api.TaskStatus{State: api.TaskState_ASSIGNED},
						Spec:   &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox", Env: []string{"A=0123456789abcdef0123456789abcdef"}}}}
					if err := tx.Create(task); err != nil {
						return err
					}
				}
				return nil
			})
			n++
		}
		loadDone <- n
	}()
	var beats, reads []time.Duration
	for i := 0; i < 100; i++ {
		start := time.Now()
		if _, err := h.client.Heartbeat(as(ctx, "n1"), &api.HeartbeatRequest{SessionId: msg.SessionId}); err != nil {
			t.Fatal(err)
		}
		beats = append(beats, time.Since(start))
		start = time.Now()
		h.store.View(func(tx raftstore.ReadTx) { _ = tx.GetNode("n1") })
		reads = append(reads, time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}
	stopLoad()
	writes := <-loadDone
	slices.Sort(beats)
	slices.Sort(reads)
	t.Logf("during %d writes of 1,000 tasks: heartbeat p50 %v p99 %v max %v; a store read p50 %v p99 %v max %v",
		writes, beats[50], beats[98], beats[99], reads[50], reads[98], reads[99])
	if beats[99] >= time.Second {
		t.Fatalf("a heartbeat took %v under store load, a whole period", beats[99])
	}
}
