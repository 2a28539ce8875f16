package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// RaftTagStore keeps each repository as one raftstore object (kind
// KindRegistryRepository, ID = repository name, the Repository as JSON), so
// tags and manifest records are replicated with the rest of the cluster's
// state. Update needs the raft leader (elsewhere it fails with
// api.ErrNotLeader); a concurrent writer's change makes it read again.
type RaftTagStore struct {
	Store *raftstore.MemoryStore
}

// raftRetries bounds how often an Update re-reads after losing a race.
const raftRetries = 10

func decodeRepository(o raftstore.Object) (*Repository, error) {
	r := &Repository{}
	if o != nil {
		if err := json.Unmarshal(o.(*api.RegistryRepository).GetData(), r); err != nil {
			return nil, fmt.Errorf("registry repository %s: %w", o.GetId(), err)
		}
	}
	return r.Clone(), nil
}

// View implements TagStore.
func (s RaftTagStore) View(_ context.Context, name string) (*Repository, error) {
	var o raftstore.Object
	s.Store.View(func(tx raftstore.ReadTx) { o = tx.Get(raftstore.KindRegistryRepository, name) })
	return decodeRepository(o)
}

// Names implements TagLister.
func (s RaftTagStore) Names(context.Context) ([]string, error) {
	var names []string
	s.Store.View(func(tx raftstore.ReadTx) {
		for _, o := range tx.List(raftstore.KindRegistryRepository) {
			names = append(names, o.GetId())
		}
	})
	return names, nil
}

// Update implements TagStore.
func (s RaftTagStore) Update(ctx context.Context, name string, fn func(*Repository) error) error {
	for try := 0; ; try++ {
		err := s.Store.Update(ctx, func(tx raftstore.WriteTx) error {
			cur := tx.Get(raftstore.KindRegistryRepository, name)
			repo, err := decodeRepository(cur)
			if err != nil {
				return err
			}
			if err := fn(repo); err != nil {
				return err
			}
			switch {
			case repo.unused() && cur == nil:
				return nil
			case repo.unused():
				return tx.Delete(raftstore.KindRegistryRepository, name)
			}
			data, err := json.Marshal(repo)
			if err != nil {
				return fmt.Errorf("registry repository %s: %w", name, err)
			}
			o := &api.RegistryRepository{Id: name, Data: data}
			if cur == nil {
				return tx.Create(o)
			}
			o.Meta = cur.GetMeta()
			return tx.Update(o)
		})
		if errors.Is(err, api.ErrConflict) && try < raftRetries {
			// Writers that lost together would collide again at once:
			// each waits a random, growing moment before reading again.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(try+1) * int64(2*time.Millisecond)))):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		return err
	}
}
