package leader

import (
	"context"
	"fmt"

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

// write applies ops in order, in as few transactions as chunkBytes allows.
// Each transaction applies whole or not at all; on the first refusal (a
// conflict: something changed since the pass read it) write stops and
// returns it, and the loop reads again and decides again, which also repairs
// whatever a partial write left half done.
func write(ctx context.Context, s Store, ops []op) error {
	for start := 0; start < len(ops); {
		end, size := start, 0
		for end < len(ops) && (end == start || size+ops[end].size() <= chunkBytes) {
			size += ops[end].size()
			end++
		}
		chunk := ops[start:end]
		err := s.Update(ctx, func(tx raftstore.WriteTx) error {
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
		if err != nil {
			return fmt.Errorf("write %d task changes (%d of %d done): %w", len(chunk), start, len(ops), err)
		}
		start = end
	}
	return nil
}
