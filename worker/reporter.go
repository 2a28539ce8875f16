package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// SendFunc delivers one batch of status updates to a manager.
type SendFunc func(ctx context.Context, updates []*api.TaskStatusUpdate) error

// Reporter collects task status changes and sends them in batches. Several
// changes of one task before a send are coalesced into the latest: the
// dispatcher only needs where a task is now, and api.Step on its side accepts
// skipped states. A failed send is retried (after RetryDelay) with whatever
// is newest by then.
type Reporter struct {
	send SendFunc
	// BatchDelay is how long the reporter waits after the first change for
	// more to join the batch.
	BatchDelay time.Duration
	// RetryDelay is the wait after a failed send.
	RetryDelay time.Duration
	// MaxBatch bounds the updates of one call.
	MaxBatch int
	Logger   *slog.Logger

	mu      sync.Mutex // guards pending, order
	pending map[string]*api.TaskStatus
	order   []string // task IDs in pending, oldest first
	wake    chan struct{}
}

// NewReporter returns a Reporter sending through send; call Run to start it.
func NewReporter(send SendFunc) *Reporter {
	return &Reporter{
		send: send, BatchDelay: 10 * time.Millisecond, RetryDelay: 500 * time.Millisecond, MaxBatch: 1000,
		Logger: slog.Default(), pending: map[string]*api.TaskStatus{}, wake: make(chan struct{}, 1),
	}
}

// Report queues a task's status; it never blocks on the network.
func (r *Reporter) Report(taskID string, st *api.TaskStatus) {
	r.mu.Lock()
	r.putLocked(taskID, proto.Clone(st).(*api.TaskStatus), true)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// putLocked queues st unless a newer status of the task is already queued
// (newer wins: a failed batch must not overwrite what came meanwhile).
func (r *Reporter) putLocked(taskID string, st *api.TaskStatus, newer bool) {
	if old, ok := r.pending[taskID]; ok {
		if newer || old.GetState() < st.GetState() {
			r.pending[taskID] = st
		}
		return
	}
	r.pending[taskID] = st
	r.order = append(r.order, taskID)
}

// Pending returns how many tasks have a status waiting to be sent.
func (r *Reporter) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// take removes up to MaxBatch queued updates, oldest task first.
func (r *Reporter) take() []*api.TaskStatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.order)
	if r.MaxBatch > 0 && n > r.MaxBatch {
		n = r.MaxBatch
	}
	out := make([]*api.TaskStatusUpdate, 0, n)
	for _, id := range r.order[:n] {
		out = append(out, &api.TaskStatusUpdate{TaskId: id, Status: r.pending[id]})
		delete(r.pending, id)
	}
	r.order = append([]string(nil), r.order[n:]...)
	return out
}

// Run sends batches until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		if !sleep(ctx, r.BatchDelay) {
			return
		}
		for {
			batch := r.take()
			if len(batch) == 0 {
				break
			}
			err := r.send(ctx, batch)
			if err == nil {
				continue
			}
			if errors.Is(err, api.ErrInvalidArgument) || errors.Is(err, api.ErrFailedPrecondition) {
				// Sending it again cannot succeed (a task not of this node).
				r.Logger.Warn("worker: task statuses refused, dropped", "count", len(batch), "err", err)
				continue
			}
			r.Logger.Debug("worker: send task statuses, will retry", "count", len(batch), "err", err)
			r.mu.Lock()
			for _, u := range batch {
				r.putLocked(u.GetTaskId(), u.GetStatus(), false)
			}
			r.mu.Unlock()
			if !sleep(ctx, r.RetryDelay) {
				return
			}
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
