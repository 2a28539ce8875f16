package raftstore

import (
	"fmt"
	"sort"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// frozen is the state at one index, captured cheaply (stored objects are
// immutable, so copying the pointers is enough) and encoded later, outside
// the lock, while Apply goes on.
type frozen struct {
	index uint64
	objs  [numKinds][]Object
}

func (s *MemoryStore) freeze() *frozen {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := &frozen{index: s.index}
	for k := range s.tables {
		f.objs[k] = make([]Object, 0, len(s.tables[k]))
		for _, o := range s.tables[k] {
			f.objs[k] = append(f.objs[k], o)
		}
	}
	return f
}

// encode marshals the state deterministically: each kind sorted by ID and
// maps marshalled in key order, so equal states give equal bytes.
func (f *frozen) encode() ([]byte, error) {
	for k := range f.objs {
		sort.Slice(f.objs[k], func(i, j int) bool { return f.objs[k][i].GetId() < f.objs[k][j].GetId() })
	}
	snap := &api.StoreSnapshot{
		Index:    f.index,
		Clusters: typed[*api.Cluster](f.objs[KindCluster]),
		Nodes:    typed[*api.Node](f.objs[KindNode]),
		Services: typed[*api.Service](f.objs[KindService]),
		Tasks:    typed[*api.Task](f.objs[KindTask]),
		Networks: typed[*api.Network](f.objs[KindNetwork]),
		Secrets:  typed[*api.Secret](f.objs[KindSecret]),
		Configs:  typed[*api.Config](f.objs[KindConfig]),
		// Repositories by name: the ID is the name.
		RegistryRepositories: typed[*api.RegistryRepository](f.objs[KindRegistryRepository]),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("raftstore: encode snapshot: %w", err)
	}
	return b, nil
}

func typed[T Object](objs []Object) []T {
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out
}

// Snapshot encodes every object and the last applied index.
func (s *MemoryStore) Snapshot() ([]byte, error) {
	return s.freeze().encode()
}

// Restore replaces the whole state with a snapshot made by Snapshot. Every
// watch ends with ErrWatchRestored. A snapshot that does not decode, or holds
// an object without ID or a duplicate, leaves the store unchanged.
func (s *MemoryStore) Restore(b []byte) error {
	var snap api.StoreSnapshot
	if err := proto.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("raftstore: decode snapshot: %w", err)
	}
	fresh := NewMemoryStore(nil, nil)
	add := func(k Kind, o Object) error {
		if o.GetId() == "" {
			return fmt.Errorf("raftstore: snapshot has a %s without id", k)
		}
		if _, dup := fresh.tables[k][o.GetId()]; dup {
			return fmt.Errorf("raftstore: snapshot has %s %s twice", k, o.GetId())
		}
		fresh.tables[k][o.GetId()] = o
		fresh.index1(k, o)
		return nil
	}
	var err error
	for _, o := range snap.GetClusters() {
		err = firstErr(err, add(KindCluster, o))
	}
	for _, o := range snap.GetNodes() {
		err = firstErr(err, add(KindNode, o))
	}
	for _, o := range snap.GetServices() {
		err = firstErr(err, add(KindService, o))
	}
	for _, o := range snap.GetTasks() {
		err = firstErr(err, add(KindTask, o))
	}
	for _, o := range snap.GetNetworks() {
		err = firstErr(err, add(KindNetwork, o))
	}
	for _, o := range snap.GetSecrets() {
		err = firstErr(err, add(KindSecret, o))
	}
	for _, o := range snap.GetConfigs() {
		err = firstErr(err, add(KindConfig, o))
	}
	for _, o := range snap.GetRegistryRepositories() {
		err = firstErr(err, add(KindRegistryRepository, o))
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables, s.byName, s.tasksBy = fresh.tables, fresh.byName, fresh.tasksBy
	s.index = snap.GetIndex()
	s.publishNodesLocked()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.endAllLocked(ErrWatchRestored)
	return nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
