package worker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

// TestAdmissionWindow: the window starts at half its ceiling, grows by a
// slot per window of fast starts up to the ceiling, is halved by a slow
// start or a late heartbeat, once per window of starts, and never goes
// under one slot.
func TestAdmissionWindow(t *testing.T) {
	a := newAdmission(8)
	slots := func() int { w, _, _ := a.state(); return w }
	start := func(took time.Duration) {
		t.Helper()
		g, _ := a.enqueue()
		select {
		case <-g:
		default:
			t.Fatal("no slot free with nothing in flight")
		}
		a.release(took)
	}
	if w := slots(); w != 4 {
		t.Fatalf("initial window %d, want 4 (half of 8, rounded up)", w)
	}
	for i := 0; i < 100; i++ {
		start(10 * time.Millisecond)
	}
	if w := slots(); w != 8 {
		t.Fatalf("after 100 fast starts the window is %d, want the ceiling 8", w)
	}
	start(100 * time.Millisecond) // over 3x the fastest
	if w := slots(); w != 4 {
		t.Fatalf("after a slow start the window is %d, want 4", w)
	}
	start(100 * time.Millisecond)
	a.congested()
	if w := slots(); w != 4 {
		t.Fatalf("a second signal within the same window cut again: %d, want 4", w)
	}
	for i := 0; i < 4; i++ {
		start(10 * time.Millisecond)
	}
	a.congested()
	if w := slots(); w != 2 {
		t.Fatalf("a late heartbeat a window later: %d, want 2", w)
	}
	for i := 0; i < 20; i++ {
		start(time.Second)
		a.congested()
	}
	if w := slots(); w != 1 {
		t.Fatalf("the window went to %d under load, want its floor 1", w)
	}
	// A start that failed (zero) teaches nothing.
	start(0)
	if w := slots(); w != 1 {
		t.Fatalf("a failed start changed the window to %d", w)
	}
}

// TestAdmissionQueue: slots go to waiters in order; a waiter that gives up
// leaves the queue, and one granted while giving up passes the slot on.
func TestAdmissionQueue(t *testing.T) {
	a := newAdmission(1)
	granted := func(g <-chan struct{}) bool {
		select {
		case <-g:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	}
	g1, _ := a.enqueue()
	g2, cancel2 := a.enqueue()
	g3, cancel3 := a.enqueue()
	g4, _ := a.enqueue()
	if !granted(g1) || granted(g2) || granted(g3) {
		t.Fatal("window of one: want only the first granted")
	}
	if _, inflight, queued := a.state(); inflight != 1 || queued != 3 {
		t.Fatalf("in flight %d, queued %d; want 1, 3", inflight, queued)
	}
	cancel2()
	a.release(time.Millisecond)
	if !granted(g3) {
		t.Fatal("the slot did not go to the next waiter after one gave up")
	}
	a.release(time.Millisecond) // g3 done
	if !granted(g4) {
		t.Fatal("the last waiter was not granted")
	}
	cancel3() // already done: a no-op
	// A waiter granted as it gives up (the grant unread) passes the slot on.
	_, cancel5 := a.enqueue()
	a.release(time.Millisecond) // g4 done: g5 is granted, unread
	cancel5()
	if _, inflight, queued := a.state(); inflight != 0 || queued != 0 {
		t.Fatalf("after every caller left: in flight %d, queued %d", inflight, queued)
	}
}

// gatedRuntime is a Runtime whose Create waits for the test: the node's
// start machinery, made slow at will. The agent's tests over the real
// engine are in agent_test.go; this one is about the queue in front of it.
type gatedRuntime struct {
	gate chan struct{} // closed: creates proceed
	mu   sync.Mutex
	cs   map[string]*ContainerState // by container ID
}

func (g *gatedRuntime) CheckImage(context.Context, string) error { return nil }
func (g *gatedRuntime) Create(ctx context.Context, t *api.Task) (ContainerState, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ContainerState{}, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := &ContainerState{ID: "c-" + t.GetId(), TaskID: t.GetId(), Status: StatusCreated}
	g.cs[c.ID] = c
	return *c, nil
}
func (g *gatedRuntime) Start(_ context.Context, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cs[id].Status, g.cs[id].Pid = StatusRunning, 1
	return nil
}
func (g *gatedRuntime) Wait(ctx context.Context, _ string) (ContainerState, error) {
	<-ctx.Done()
	return ContainerState{}, ctx.Err()
}
func (g *gatedRuntime) Stop(context.Context, string, time.Duration) error { return nil }
func (g *gatedRuntime) Remove(_ context.Context, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.cs, id)
	return nil
}
func (g *gatedRuntime) Inspect(_ context.Context, idOrName string) (ContainerState, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.cs {
		if c.ID == idOrName || strings.HasSuffix(idOrName, "."+c.TaskID) || idOrName == "task."+c.TaskID {
			return *c, nil
		}
	}
	return ContainerState{}, ErrNotFound
}
func (g *gatedRuntime) List(context.Context) ([]ContainerState, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []ContainerState
	for _, c := range g.cs {
		out = append(out, *c)
	}
	return out, nil
}

// TestAgentQueuesStartsInAccepted: tasks beyond the start window are
// reported ACCEPTED (queued, visible to the managers), not PREPARING and not
// failed, and start once slots free up.
func TestAgentQueuesStartsInAccepted(t *testing.T) {
	rt := &gatedRuntime{gate: make(chan struct{}), cs: map[string]*ContainerState{}}
	fm := startAgentWith(t, rt, 2) // window of one slot at first
	var ts []*api.Task
	for i := 0; i < 5; i++ {
		ts = append(ts, busyboxTask(fmt.Sprint("t", i), api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "60"))
	}
	fm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "1", ts...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		counts := map[api.TaskState]int{}
		for _, task := range ts {
			counts[fm.status(task.GetId()).GetState()]++
		}
		if counts[api.TaskState_PREPARING] == 1 && counts[api.TaskState_ACCEPTED] == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task states %v, want 1 PREPARING and 4 ACCEPTED (queued)", counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(rt.gate)
	for _, task := range ts {
		waitState(t, fm, task.GetId(), api.TaskState_RUNNING)
	}
}
