package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// ErrForeignTask refuses a status update for a task assigned to another node:
// an agent reports only its own tasks, so this is a bug or a rogue agent, and
// the whole request is refused.
var ErrForeignTask = api.Wrap(api.ErrFailedPrecondition, errors.New("dispatcher: task is not assigned to this node"))

// updateVerdict is what validateUpdate decided for one reported status.
type updateVerdict int

const (
	// accept: queue it for the next batch.
	accept updateVerdict = iota
	// ignore: stale, duplicate or about a task that is gone; dropping it is
	// correct (agents resend, networks reorder) and not the agent's error.
	ignore
	// refuse: the agent must not report this task at all.
	refuse
)

// validateUpdate checks one reported status against the stored task t (nil
// if it no longer exists) for the calling node. The rules: the task must be
// the caller's; the step must be one api.Step accepts (forward only, not out
// of a terminal state, not REMOVE). An update that does not move the state
// forward is ignored unless it carries news at the same state (a container
// ID, a message), which Step allows as a refresh.
func validateUpdate(nodeID string, t *api.Task, u *api.TaskStatusUpdate) (updateVerdict, error) {
	if u.GetTaskId() == "" || u.GetStatus() == nil {
		return refuse, api.Wrap(api.ErrInvalidArgument, errors.New("dispatcher: status update without task ID or status"))
	}
	if t == nil {
		return ignore, nil
	}
	if t.GetNodeId() != nodeID {
		return refuse, fmt.Errorf("task %s (node %q): %w", t.GetId(), t.GetNodeId(), ErrForeignTask)
	}
	if err := api.CheckTransition(t.GetStatus().GetState(), u.GetStatus().GetState(), t.GetDesiredState()); err != nil {
		return ignore, nil
	}
	if proto.Equal(t.GetStatus(), u.GetStatus()) {
		return ignore, nil
	}
	return accept, nil
}

// pendingUpdate is one accepted status waiting for the batcher.
type pendingUpdate struct {
	nodeID string
	taskID string
	status *api.TaskStatus
}

// statusRequest is one UpdateTaskStatus call's accepted updates; done gets
// the result of the write that stored them.
type statusRequest struct {
	ups  []pendingUpdate
	done chan error
}

// batcher collects accepted status updates and writes them to the store in
// few transactions: at most every interval, or at once when max are pending.
// One goroutine (run) owns the buffer; UpdateTaskStatus hands its updates
// over a channel and waits until the write that holds them is committed, so
// an agent's report is acknowledged only once the store has it (a failed
// write fails the call, and the agent sends it again).
type batcher struct {
	store    *raftstore.MemoryStore
	clock    Clock
	interval time.Duration
	max      int
	in       chan statusRequest
	// onFlush, if set, is told how many updates each flush wrote (tests,
	// metrics).
	onFlush func(n int)
	// logf reports flushes that failed.
	logf func(format string, args ...any)
	// took counts the requests run has taken in (tests wait on it).
	took atomic.Int64
}

// add hands updates to the batcher and waits until they are stored; it
// fails if the write fails or ctx ends first.
func (b *batcher) add(ctx context.Context, ups []pendingUpdate) error {
	req := statusRequest{ups: ups, done: make(chan error, 1)}
	select {
	case b.in <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the batcher's goroutine; it writes what it holds and returns when
// ctx ends (the final write uses a short detached context, so updates that
// were accepted are not lost on a clean stop while this manager can still
// write).
func (b *batcher) run(ctx context.Context) {
	buf := make(map[string]pendingUpdate)
	var order []string // task IDs in arrival order, so flushes are deterministic
	var waiters []chan error
	var timer <-chan time.Time
	flush := func(fctx context.Context) {
		if len(buf) == 0 && len(waiters) == 0 {
			return
		}
		ups := make([]pendingUpdate, 0, len(order))
		for _, id := range order {
			ups = append(ups, buf[id])
		}
		w := waiters
		buf, order, waiters, timer = make(map[string]pendingUpdate), order[:0], nil, nil
		n, err := writeStatuses(fctx, b.store, ups)
		if err != nil && b.logf != nil {
			b.logf("dispatcher: writing %d task statuses: %v", len(ups), err)
		}
		for _, done := range w {
			done <- err
		}
		if b.onFlush != nil {
			b.onFlush(n)
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), time.Second)
			flush(fctx)
			cancel()
			return
		case req := <-b.in:
			b.took.Add(1)
			for _, u := range req.ups {
				prev, ok := buf[u.taskID]
				if !ok {
					order = append(order, u.taskID)
				} else if u.status.GetState() < prev.status.GetState() {
					continue // an older report overtaken by a newer one
				}
				buf[u.taskID] = u
			}
			waiters = append(waiters, req.done)
			if len(buf) >= b.max {
				flush(ctx)
			} else if timer == nil {
				timer = b.clock.After(b.interval)
			}
		case <-timer:
			flush(ctx)
		}
	}
}

// updater is the store as the status writer uses it.
type updater interface {
	Update(ctx context.Context, fn func(raftstore.WriteTx) error) error
}

// statusChunkBytes keeps each transaction well under
// raftstore.MaxProposalBytes: a status write carries the whole task.
const statusChunkBytes = raftstore.MaxProposalBytes / 2

// maxSoloAttempts bounds the retries of one task's status that keeps losing
// version races; past it the write fails and the agent reports again.
const maxSoloAttempts = 50

// writeStatuses stores ups, each stepped with api.Step against the task as
// it is at write time (it may have moved on, been reassigned or deleted since
// it was validated; such updates are dropped: the store already has newer
// news). It writes one transaction per statusChunkBytes of tasks. A
// transaction refused because of one task (it changed between the read and
// the commit) is written again without that task, and that task alone is
// re-read and written until it is stored: one busy task never costs the
// others their write, and no status is dropped for a conflict. It returns
// how many statuses were written.
func writeStatuses(ctx context.Context, store updater, ups []pendingUpdate) (int, error) {
	written := 0
	for len(ups) > 0 {
		n, rest, err := writeChunk(ctx, store, ups)
		var oe *raftstore.ObjectError
		switch {
		case err == nil:
			written += n
			ups = ups[rest:]
		case errors.As(err, &oe) && oe.Kind == raftstore.KindTask:
			var solo []pendingUpdate
			ups, solo = setAside(ups, oe.ID)
			k, err := writeSolo(ctx, store, solo)
			written += k
			if err != nil {
				return written, err
			}
		default:
			return written, err
		}
	}
	return written, nil
}

// writeChunk writes a prefix of ups in one transaction and says how many
// statuses it wrote and how many updates it covered.
func writeChunk(ctx context.Context, store updater, ups []pendingUpdate) (n, covered int, err error) {
	err = store.Update(ctx, func(tx raftstore.WriteTx) error {
		n, covered = 0, len(ups)
		size := 0
		for i, u := range ups {
			t := tx.GetTask(u.taskID)
			if t == nil || t.GetNodeId() != u.nodeID || api.Step(t, u.status) != nil {
				continue
			}
			if err := tx.Update(t); err != nil {
				return err
			}
			n++
			if size += proto.Size(t); size >= statusChunkBytes {
				covered = i + 1
				break
			}
		}
		return nil
	})
	return n, covered, err
}

// setAside splits the updates of task id from ups.
func setAside(ups []pendingUpdate, id string) (rest, solo []pendingUpdate) {
	rest = make([]pendingUpdate, 0, len(ups))
	for _, u := range ups {
		if u.taskID == id {
			solo = append(solo, u)
		} else {
			rest = append(rest, u)
		}
	}
	return rest, solo
}

// writeSolo writes one task's updates in their own transactions, reading
// the task afresh on each attempt.
func writeSolo(ctx context.Context, store updater, solo []pendingUpdate) (int, error) {
	for attempt := 1; ; attempt++ {
		n, _, err := writeChunk(ctx, store, solo)
		if err == nil {
			return n, nil
		}
		if attempt == maxSoloAttempts || !errors.Is(err, api.ErrConflict) && !errors.Is(err, api.ErrNotFound) {
			return 0, err
		}
	}
}
