package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

// fakeSink records batches; it fails the first `fail` calls.
type fakeSink struct {
	mu      sync.Mutex
	fail    int
	batches [][]*api.TaskStatusUpdate
	calls   chan struct{}
}

func (f *fakeSink) send(_ context.Context, ups []*api.TaskStatusUpdate) error {
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		select {
		case f.calls <- struct{}{}:
		default:
		}
	}()
	if f.fail > 0 {
		f.fail--
		return errors.New("manager unreachable")
	}
	f.batches = append(f.batches, ups)
	return nil
}

func (f *fakeSink) latest() map[string]api.TaskState {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]api.TaskState{}
	for _, b := range f.batches {
		for _, u := range b {
			out[u.GetTaskId()] = u.GetStatus().GetState()
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReporterCoalescesAndBatches(t *testing.T) {
	sink := &fakeSink{calls: make(chan struct{}, 1)}
	r := NewReporter(sink.send)
	r.BatchDelay = 50 * time.Millisecond
	// Queued before Run: all of it must go out in one batch.
	for _, s := range []api.TaskState{api.TaskState_ACCEPTED, api.TaskState_PREPARING, api.TaskState_RUNNING} {
		r.Report("a", &api.TaskStatus{State: s})
	}
	r.Report("b", &api.TaskStatus{State: api.TaskState_ACCEPTED})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "a batch", func() bool { return r.Pending() == 0 && len(sink.latest()) == 2 })
	sink.mu.Lock()
	n, first := len(sink.batches), sink.batches[0]
	sink.mu.Unlock()
	if n != 1 || len(first) != 2 {
		t.Fatalf("got %d batches, first of %d updates; want 1 batch of 2 (coalesced)", n, len(first))
	}
	if first[0].GetTaskId() != "a" || first[0].GetStatus().GetState() != api.TaskState_RUNNING {
		t.Fatalf("first update %v, want task a RUNNING (the latest)", first[0])
	}
}

func TestReporterRetriesKeepingNewest(t *testing.T) {
	sink := &fakeSink{fail: 2, calls: make(chan struct{}, 1)}
	r := NewReporter(sink.send)
	r.BatchDelay, r.RetryDelay = 0, 20*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	r.Report("a", &api.TaskStatus{State: api.TaskState_STARTING})
	<-sink.calls // first attempt failed
	// A newer status arrives while the failed one waits for its retry: the
	// retry must not bring back STARTING after RUNNING.
	r.Report("a", &api.TaskStatus{State: api.TaskState_RUNNING})
	waitFor(t, "delivery", func() bool { return sink.latest()["a"] == api.TaskState_RUNNING })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, b := range sink.batches {
		for _, u := range b {
			if u.GetStatus().GetState() != api.TaskState_RUNNING {
				t.Fatalf("sent %v after RUNNING was reported", u.GetStatus().GetState())
			}
		}
	}
}

func TestReporterDropsRefused(t *testing.T) {
	var calls int
	var mu sync.Mutex
	r := NewReporter(func(context.Context, []*api.TaskStatusUpdate) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return api.Wrap(api.ErrFailedPrecondition, errors.New("not this node's task"))
	})
	r.BatchDelay, r.RetryDelay = 0, time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	r.Report("x", &api.TaskStatus{State: api.TaskState_RUNNING})
	waitFor(t, "the send", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 1 })
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if calls != 1 || r.Pending() != 0 {
		t.Fatalf("calls=%d pending=%d; a refused batch must be dropped, not retried", calls, r.Pending())
	}
}
