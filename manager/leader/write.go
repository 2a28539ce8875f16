package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// chunkBytes is how much encoded change one transaction carries at most: half
// of raftstore.MaxProposalBytes, leaving room for the proposal's framing and
// the meta the store stamps on each object.
const chunkBytes = raftstore.MaxProposalBytes / 2

// op is one task write.
type op struct {
	create *api.Task
	update *api.Task
	delete string
}

func (o op) size() int {
	switch {
	case o.create != nil:
		return proto.Size(o.create) + 64
	case o.update != nil:
		return proto.Size(o.update) + 64
	default:
		return len(o.delete) + 64
	}
}

// writeParallel is how many of write's transactions may be waiting for raft
// at once: raftstore's Node joins concurrent proposals into one entry and
// keeps several entries in flight, so the next chunk is built and
// replicated while the one before it commits, instead of each chunk of a
// 100,000-task pass paying a full round (encode, log write, replication,
// apply) in turn. The scale benchmark's placements/s is bound by this.
const writeParallel = 4

// write applies ops in as few transactions as chunkBytes allows, up to
// writeParallel of them at once. Ops are about distinct tasks (a pass
// writes each task at most once), so the order of chunks does not matter;
// within a chunk they apply in order. A transaction applies whole or not at
// all; when one is refused because of one object (a conflict: it changed
// since the pass read it, or is gone), that op is set aside and the rest of
// the chunk is written again, so one busy task never costs the others their
// write. write then returns the first refusal, and the loop reads again and
// decides again about what was set aside. Any other error stops write from
// starting more chunks; it waits for those started and returns the error.
func write(ctx context.Context, s Store, ops []op) error {
	var chunks [][]op
	for start := 0; start < len(ops); {
		end, size := start, 0
		for end < len(ops) && (end == start || size+ops[end].size() <= chunkBytes) {
			size += ops[end].size()
			end++
		}
		chunks = append(chunks, ops[start:end])
		start = end
	}
	var (
		mu              sync.Mutex
		refused, failed error
		done            int
		wg              sync.WaitGroup
		slots           = make(chan struct{}, writeParallel)
	)
	for _, chunk := range chunks {
		slots <- struct{}{}
		mu.Lock()
		stop := failed != nil
		mu.Unlock()
		if stop {
			<-slots
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			r, err := writeRefusing(ctx, s, chunk)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && failed == nil {
				failed = fmt.Errorf("write %d task changes (%d of %d done): %w", len(chunk), done, len(ops), err)
			}
			if r != nil && refused == nil {
				refused = r
			}
			if err == nil {
				done += len(chunk)
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return failed
	}
	return refused
}

// writeRefusing writes chunk in one transaction, setting aside each op the
// store refuses because of its object and writing the rest again. refused
// is the first such refusal; err is any other failure.
func writeRefusing(ctx context.Context, s Store, chunk []op) (refused, err error) {
	for len(chunk) > 0 {
		err := writeChunk(ctx, s, chunk)
		if err == nil {
			return refused, nil
		}
		var oe *raftstore.ObjectError
		i := -1
		if errors.As(err, &oe) {
			i = indexOf(chunk, oe)
		}
		if i < 0 {
			return refused, err
		}
		if refused == nil {
			refused = fmt.Errorf("write task %s: %w", oe.ID, err)
		}
		chunk = append(chunk[:i:i], chunk[i+1:]...)
	}
	return refused, nil
}

// indexOf finds the op of chunk that oe is about, or -1.
func indexOf(chunk []op, oe *raftstore.ObjectError) int {
	if oe == nil || oe.Kind != raftstore.KindTask {
		return -1
	}
	for i, o := range chunk {
		if o.id() == oe.ID {
			return i
		}
	}
	return -1
}

func (o op) id() string {
	switch {
	case o.create != nil:
		return o.create.GetId()
	case o.update != nil:
		return o.update.GetId()
	default:
		return o.delete
	}
}

// writeChunk applies chunk in one transaction.
func writeChunk(ctx context.Context, s Store, chunk []op) error {
	return s.Update(ctx, func(tx raftstore.WriteTx) error {
		for _, o := range chunk {
			var err error
			switch {
			case o.create != nil:
				err = tx.Create(o.create)
			case o.update != nil:
				err = tx.Update(o.update)
			default:
				if tx.GetTask(o.delete) == nil {
					continue // already gone: nothing to do
				}
				err = tx.Delete(raftstore.KindTask, o.delete)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
