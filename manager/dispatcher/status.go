package dispatcher

import (
	"context"
	"errors"
	"fmt"
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

// batcher collects accepted status updates and writes them to the store in
// few transactions: at most every interval, or at once when max are pending.
// One goroutine (run) owns the buffer; UpdateTaskStatus hands updates over a
// channel, which blocks only while a flush is being written (back pressure on
// agents when raft is slower than they report).
type batcher struct {
	store    *raftstore.MemoryStore
	clock    Clock
	interval time.Duration
	max      int
	in       chan []pendingUpdate
	// onFlush, if set, is told how many updates each flush wrote (tests,
	// metrics).
	onFlush func(n int)
	// logf reports flushes that failed.
	logf func(format string, args ...any)
}

// add hands updates to the batcher; it fails only if ctx ends first.
func (b *batcher) add(ctx context.Context, ups []pendingUpdate) error {
	select {
	case b.in <- ups:
		return nil
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
	var timer <-chan time.Time
	flush := func(fctx context.Context) {
		if len(buf) == 0 {
			return
		}
		ups := make([]pendingUpdate, 0, len(order))
		for _, id := range order {
			ups = append(ups, buf[id])
		}
		buf, order, timer = make(map[string]pendingUpdate), order[:0], nil
		n, err := writeStatuses(fctx, b.store, ups)
		if err != nil && b.logf != nil {
			b.logf("dispatcher: writing %d task statuses: %v", len(ups), err)
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
		case ups := <-b.in:
			for _, u := range ups {
				prev, ok := buf[u.taskID]
				if !ok {
					order = append(order, u.taskID)
				} else if u.status.GetState() < prev.status.GetState() {
					continue // an older report overtaken by a newer one
				}
				buf[u.taskID] = u
			}
			if len(buf) >= b.max {
				flush(ctx)
			} else if timer == nil && len(buf) > 0 {
				timer = b.clock.After(b.interval)
			}
		case <-timer:
			flush(ctx)
		}
	}
}

// statusChunkBytes keeps each transaction well under
// raftstore.MaxProposalBytes: a status write carries the whole task.
const statusChunkBytes = raftstore.MaxProposalBytes / 2

// writeStatuses stores ups, each stepped with api.Step against the task as
// it is at write time (it may have moved on, been reassigned or deleted since
// it was validated; such updates are dropped). It writes one transaction per
// statusChunkBytes of tasks and retries a chunk that lost a version race. It
// returns how many statuses were written.
func writeStatuses(ctx context.Context, store *raftstore.MemoryStore, ups []pendingUpdate) (int, error) {
	written := 0
	for len(ups) > 0 {
		var n, rest int
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			err = store.Update(ctx, func(tx raftstore.WriteTx) error {
				n, rest = 0, len(ups)
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
						rest = i + 1
						break
					}
				}
				return nil
			})
			if !errors.Is(err, api.ErrConflict) {
				break
			}
		}
		if err != nil {
			return written, err
		}
		written += n
		if rest >= len(ups) {
			break
		}
		ups = ups[rest:]
	}
	return written, nil
}
