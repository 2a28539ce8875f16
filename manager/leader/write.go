package leader

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// chunkBytes is how much encoded change one transaction carries at most: half
// of raftstore.MaxProposalBytes, leaving room for the proposal's framing and
// the meta the store stamps on each object.
const chunkBytes = raftstore.MaxProposalBytes / 2

// op is one task write, or the update status of a service.
type op struct {
	create  *api.Task
	update  *api.Task
	delete  string
	service *api.Service
}

func (o op) size() int {
	switch {
	case o.create != nil:
		return proto.Size(o.create) + 64
	case o.update != nil:
		return proto.Size(o.update) + 64
	case o.service != nil:
		return proto.Size(o.service) + 64
	default:
		return len(o.delete) + 64
	}
}

// write applies ops in order, in as few transactions as chunkBytes allows.
// A transaction applies whole or not at all; when one is refused because of
// one object (a conflict: it changed since the pass read it, or is gone),
// that op is set aside and the rest of the chunk is written again, so one
// busy task never costs the others their write. write then returns the
// first refusal, and the loop reads again and decides again about what was
// set aside. Other errors stop write at once.
func write(ctx context.Context, s Store, ops []op) error {
	var refused error
	for start := 0; start < len(ops); {
		end, size := start, 0
		for end < len(ops) && (end == start || size+ops[end].size() <= chunkBytes) {
			size += ops[end].size()
			end++
		}
		chunk := ops[start:end]
		for len(chunk) > 0 {
			err := writeChunk(ctx, s, chunk)
			if err == nil {
				break
			}
			var oe *raftstore.ObjectError
			i := -1
			if errors.As(err, &oe) {
				i = indexOf(chunk, oe)
			}
			if i < 0 {
				return fmt.Errorf("write %d task changes (%d of %d done): %w", len(chunk), start, len(ops), err)
			}
			if refused == nil {
				refused = fmt.Errorf("write %s %s: %w", oe.Kind, oe.ID, err)
			}
			chunk = append(chunk[:i:i], chunk[i+1:]...)
		}
		start = end
	}
	return refused
}

// indexOf finds the op of chunk that oe is about, or -1.
func indexOf(chunk []op, oe *raftstore.ObjectError) int {
	if oe == nil {
		return -1
	}
	for i, o := range chunk {
		if kind, id := o.object(); kind == oe.Kind && id == oe.ID {
			return i
		}
	}
	return -1
}

// object names what o writes.
func (o op) object() (raftstore.Kind, string) {
	switch {
	case o.create != nil:
		return raftstore.KindTask, o.create.GetId()
	case o.update != nil:
		return raftstore.KindTask, o.update.GetId()
	case o.service != nil:
		return raftstore.KindService, o.service.GetId()
	default:
		return raftstore.KindTask, o.delete
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
			case o.service != nil:
				err = tx.Update(o.service)
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
