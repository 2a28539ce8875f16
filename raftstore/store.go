// Package raftstore is the managers' replicated state: a typed, versioned
// in-memory store of the cluster, nodes, services, tasks, networks, secrets
// and configs (the raft FSM), and the hashicorp/raft node that replicates
// every write to it.
//
// Writers run Update, which records their changes as a Proposal; the
// proposal goes through raft and every manager applies it with Apply, which
// is deterministic (no clock, no randomness, no map order: the writer stamps
// times and IDs before proposing) and checks each object's version, so a
// writer that read stale data gets api.ErrConflict instead of overwriting a
// newer write. An object's version is the raft index that last wrote it.
// Readers use View; watchers receive each applied proposal's changes.
//
// Goroutines: MemoryStore starts none. Node owns raft's goroutines, one
// batcher that turns concurrent proposals into raft entries, one waiter that
// answers proposers when their entry is applied, and one leader observer;
// all stop in Node.Close. See docs/cluster.md.
package raftstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Proposer carries a proposal to every replica and returns once it has been
// applied to this one, with the proposal's own result. Node implements it.
type Proposer interface {
	Propose(ctx context.Context, p *api.Proposal) error
}

// MemoryStore is the FSM's state. Stored objects are never modified in place:
// Apply replaces them, so a pointer handed to a watcher or a snapshot stays
// valid and unchanging.
type MemoryStore struct {
	proposer Proposer
	now      func() time.Time

	// mu guards everything below. Apply holds it for writing; it is never
	// held across disk or network I/O.
	mu      sync.RWMutex
	index   uint64 // last applied raft index
	tables  [numKinds]map[string]Object
	byName  [numKinds]map[string]string       // unique name -> id (services, networks)
	tasksBy [2]map[string]map[string]struct{} // [byService|byNode] key -> task ids

	// wmu guards watch and every Watcher's err. It is taken after mu (never
	// mu after wmu); Apply publishes under wmu alone (see applyAndPublish).
	wmu   sync.Mutex
	watch watchers

	// nodes is read without any lock (PeekNode); written under mu.
	nodes atomic.Pointer[nodeView]
}

const (
	byService = 0
	byNode    = 1
)

// NewMemoryStore returns an empty store. Writes go through p; with p nil they
// are applied directly, as if each were the next raft entry (for tests and
// tools that need no replication). now stamps created/updated times before
// proposing; nil means time.Now.
func NewMemoryStore(p Proposer, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	s := &MemoryStore{proposer: p, now: now, watch: newWatchers()}
	s.reset()
	return s
}

// reset empties the tables; mu must be held (or s not yet shared).
func (s *MemoryStore) reset() {
	for k := range s.tables {
		s.tables[k] = make(map[string]Object)
		s.byName[k] = make(map[string]string)
	}
	for i := range s.tasksBy {
		s.tasksBy[i] = make(map[string]map[string]struct{})
	}
	s.index = 0
	s.publishNodesLocked()
}

// ReadTx reads a consistent state. Objects it returns are copies the caller
// owns and may modify (and pass to WriteTx.Update).
type ReadTx interface {
	// Version is the raft index of the last applied entry.
	Version() uint64
	// Get returns the object of kind k with id, or nil.
	Get(k Kind, id string) Object
	// List returns every object of kind k, sorted by ID.
	List(k Kind) []Object
	// ForEach calls fn with every object of kind k, in no particular order,
	// until fn returns false. The objects are the store's own, shared and
	// not copied, which makes a full scan of 100,000 tasks cheap (List costs
	// ~0.4 s there): read them, never modify them; proto.Clone one to keep or
	// update it.
	ForEach(k Kind, fn func(Object) bool)
	// GetByName returns the service or network named name, or nil.
	GetByName(k Kind, name string) Object
	GetCluster(id string) *api.Cluster
	GetNode(id string) *api.Node
	GetService(id string) *api.Service
	GetTask(id string) *api.Task
	GetNetwork(id string) *api.Network
	GetSecret(id string) *api.Secret
	GetConfig(id string) *api.Config
	Clusters() []*api.Cluster
	Nodes() []*api.Node
	Services() []*api.Service
	Networks() []*api.Network
	Secrets() []*api.Secret
	Configs() []*api.Config
	// Tasks returns every task, sorted by ID.
	Tasks() []*api.Task
	// TasksOfService and TasksOnNode use indexes, not a scan.
	TasksOfService(serviceID string) []*api.Task
	TasksOnNode(nodeID string) []*api.Task
}

// WriteTx is a ReadTx that also records changes; it sees its own writes.
type WriteTx interface {
	ReadTx
	// Create adds o. An empty ID is filled with NewID; created and updated
	// times are stamped now. The stored version becomes the raft index.
	Create(o Object) error
	// Update replaces the stored object with o. o's meta.version must be the
	// version it was read at, or Apply refuses with api.ErrConflict.
	Update(o Object) error
	// Delete removes the object of kind k with id.
	Delete(k Kind, id string) error
}

// View runs fn with a read transaction. fn must not call Update (the read
// lock is held while fn runs, so keep it short).
func (s *MemoryStore) View(fn func(ReadTx)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(&readTx{s: s})
}

// MaxProposalBytes bounds one Update's encoded changes. A raft entry is
// written, replicated and applied whole; a huge one stalls heartbeats behind
// it, so large writes (creating thousands of tasks) are split by the caller.
const MaxProposalBytes = 4 << 20

// Update runs fn with a write transaction, then proposes its changes and
// waits until they are applied here. If fn returns an error nothing is
// proposed. A proposal applies entirely or not at all; when it is refused
// (a stale version, a duplicate name) Update returns the reason, classified
// with the api error classes. Update may be called concurrently; with raft,
// concurrent updates share raft entries.
func (s *MemoryStore) Update(ctx context.Context, fn func(WriteTx) error) error {
	tx := &writeTx{readTx: readTx{s: s, unlocked: true}, now: s.now().UTC()}
	if err := fn(tx); err != nil {
		return err
	}
	p := tx.proposal()
	if len(p.Actions) == 0 {
		return nil
	}
	if size := proto.Size(p); size > MaxProposalBytes {
		return api.Wrap(api.ErrInvalidArgument, fmt.Errorf(
			"raftstore: proposal of %d actions is %d bytes, over %d: split the update", len(p.Actions), size, MaxProposalBytes))
	}
	if s.proposer != nil {
		return s.proposer.Propose(ctx, p)
	}
	// No raft: apply as the next entry. Cloning stands in for the encoding a
	// raft entry would go through, so the caller's objects are not shared.
	p = proto.Clone(p).(*api.Proposal)
	s.mu.Lock()
	return s.applyAndPublish(s.index+1, &api.ProposalBatch{Proposals: []*api.Proposal{p}}, true)[0]
}

type readTx struct {
	s *MemoryStore
	// unlocked is false inside View, whose caller holds s.mu.RLock already;
	// a writeTx's reads take the read lock per call instead, so its fn may
	// run for a while without blocking Apply.
	unlocked bool
}

func (tx *readTx) rlock() func() {
	if !tx.unlocked {
		return func() {}
	}
	tx.s.mu.RLock()
	return tx.s.mu.RUnlock
}

func (tx *readTx) Version() uint64 {
	defer tx.rlock()()
	return tx.s.index
}

func (tx *readTx) Get(k Kind, id string) Object {
	if k < 0 || k >= numKinds {
		return nil
	}
	defer tx.rlock()()
	if o, ok := tx.s.tables[k][id]; ok {
		return proto.Clone(o).(Object)
	}
	return nil
}

func (tx *readTx) GetByName(k Kind, name string) Object {
	if k < 0 || k >= numKinds {
		return nil
	}
	unlock := tx.rlock()
	id, ok := tx.s.byName[k][name]
	unlock()
	if !ok {
		return nil
	}
	return tx.Get(k, id)
}

func (tx *readTx) List(k Kind) []Object {
	if k < 0 || k >= numKinds {
		return nil
	}
	defer tx.rlock()()
	out := make([]Object, 0, len(tx.s.tables[k]))
	for _, o := range tx.s.tables[k] {
		out = append(out, proto.Clone(o).(Object))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

func (tx *readTx) ForEach(k Kind, fn func(Object) bool) {
	if k < 0 || k >= numKinds {
		return
	}
	defer tx.rlock()()
	for _, o := range tx.s.tables[k] {
		if !fn(o) {
			return
		}
	}
}

func (tx *readTx) tasksBy(which int, key string) []*api.Task {
	defer tx.rlock()()
	ids := tx.s.tasksBy[which][key]
	out := make([]*api.Task, 0, len(ids))
	for id := range ids {
		out = append(out, proto.Clone(tx.s.tables[KindTask][id]).(*api.Task))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

func (tx *readTx) TasksOfService(id string) []*api.Task { return tx.tasksBy(byService, id) }
func (tx *readTx) TasksOnNode(id string) []*api.Task    { return tx.tasksBy(byNode, id) }

func (tx *readTx) GetCluster(id string) *api.Cluster { return get[*api.Cluster](tx, KindCluster, id) }
func (tx *readTx) GetNode(id string) *api.Node       { return get[*api.Node](tx, KindNode, id) }
func (tx *readTx) GetService(id string) *api.Service { return get[*api.Service](tx, KindService, id) }
func (tx *readTx) GetTask(id string) *api.Task       { return get[*api.Task](tx, KindTask, id) }
func (tx *readTx) GetNetwork(id string) *api.Network { return get[*api.Network](tx, KindNetwork, id) }
func (tx *readTx) Clusters() []*api.Cluster          { return list[*api.Cluster](tx, KindCluster) }
func (tx *readTx) Nodes() []*api.Node                { return list[*api.Node](tx, KindNode) }
func (tx *readTx) Services() []*api.Service          { return list[*api.Service](tx, KindService) }
func (tx *readTx) Tasks() []*api.Task                { return list[*api.Task](tx, KindTask) }
func (tx *readTx) Networks() []*api.Network          { return list[*api.Network](tx, KindNetwork) }
func (tx *readTx) GetSecret(id string) *api.Secret   { return get[*api.Secret](tx, KindSecret, id) }
func (tx *readTx) GetConfig(id string) *api.Config   { return get[*api.Config](tx, KindConfig, id) }
func (tx *readTx) Secrets() []*api.Secret            { return list[*api.Secret](tx, KindSecret) }
func (tx *readTx) Configs() []*api.Config            { return list[*api.Config](tx, KindConfig) }

// getter is what get and list need: the interface method set, so that a
// writeTx's overlay is consulted too.
type getter interface {
	Get(Kind, string) Object
	List(Kind) []Object
}

func get[T Object](tx getter, k Kind, id string) T {
	var zero T
	if o, ok := tx.Get(k, id).(T); ok {
		return o
	}
	return zero
}

func list[T Object](tx getter, k Kind) []T {
	objs := tx.List(k)
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out
}

// ErrInvalidObject is returned for a write of something that is not a stored
// object, or has no ID where one is needed.
var ErrInvalidObject = api.Wrap(api.ErrInvalidArgument, errors.New("raftstore: invalid object"))

// change is one pending write in a writeTx: obj nil means delete.
type change struct {
	kind    Kind
	id      string
	action  api.StoreAction_Kind
	obj     Object
	created bool // created in this tx
}

type writeTx struct {
	readTx
	now     time.Time
	order   []*change
	changes map[[2]string]*change // kind-name, id
}

func changeKey(k Kind, id string) [2]string { return [2]string{kindNames[k], id} }

func (tx *writeTx) pending(k Kind, id string) (*change, bool) {
	c, ok := tx.changes[changeKey(k, id)]
	return c, ok
}

func (tx *writeTx) record(c *change) {
	if tx.changes == nil {
		tx.changes = make(map[[2]string]*change)
	}
	if old, ok := tx.changes[changeKey(c.kind, c.id)]; ok {
		*old = *c
		return
	}
	tx.changes[changeKey(c.kind, c.id)] = c
	tx.order = append(tx.order, c)
}

// peek is Get without the copy, for checks that only read the object:
// cloning every task an update touches just to compare its version was a
// tenth of the leader's CPU in the scale benchmark. The result is shared
// (the store's or the transaction's own): never modify it.
func (tx *writeTx) peek(k Kind, id string) Object {
	if c, ok := tx.pending(k, id); ok {
		return c.obj
	}
	if k < 0 || k >= numKinds {
		return nil
	}
	defer tx.rlock()()
	return tx.s.tables[k][id]
}

// Get sees the transaction's own writes first.
func (tx *writeTx) Get(k Kind, id string) Object {
	if c, ok := tx.pending(k, id); ok {
		if c.obj == nil {
			return nil
		}
		return proto.Clone(c.obj).(Object)
	}
	return tx.readTx.Get(k, id)
}

// List merges the transaction's writes into the stored objects.
func (tx *writeTx) List(k Kind) []Object {
	stored := tx.readTx.List(k)
	if len(tx.changes) == 0 {
		return stored
	}
	out := stored[:0]
	for _, o := range stored {
		if _, ok := tx.pending(k, o.GetId()); !ok {
			out = append(out, o)
		}
	}
	for _, c := range tx.order {
		if c.kind == k && c.obj != nil {
			out = append(out, proto.Clone(c.obj).(Object))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// ForEach sees the transaction's own writes: stored objects it has not
// changed, then its pending ones.
func (tx *writeTx) ForEach(k Kind, fn func(Object) bool) {
	stop := false
	tx.readTx.ForEach(k, func(o Object) bool {
		if _, ok := tx.pending(k, o.GetId()); ok {
			return true
		}
		stop = !fn(o)
		return !stop
	})
	for _, c := range tx.order {
		if stop {
			return
		}
		if c.kind == k && c.obj != nil {
			stop = !fn(c.obj)
		}
	}
}

func (tx *writeTx) GetByName(k Kind, name string) Object {
	for _, o := range tx.List(k) {
		if uniqueName(o) == name && name != "" {
			return o
		}
	}
	return nil
}

func (tx *writeTx) GetCluster(id string) *api.Cluster { return get[*api.Cluster](tx, KindCluster, id) }
func (tx *writeTx) GetNode(id string) *api.Node       { return get[*api.Node](tx, KindNode, id) }
func (tx *writeTx) GetService(id string) *api.Service { return get[*api.Service](tx, KindService, id) }
func (tx *writeTx) GetTask(id string) *api.Task       { return get[*api.Task](tx, KindTask, id) }
func (tx *writeTx) GetNetwork(id string) *api.Network { return get[*api.Network](tx, KindNetwork, id) }
func (tx *writeTx) Clusters() []*api.Cluster          { return list[*api.Cluster](tx, KindCluster) }
func (tx *writeTx) Nodes() []*api.Node                { return list[*api.Node](tx, KindNode) }
func (tx *writeTx) Services() []*api.Service          { return list[*api.Service](tx, KindService) }
func (tx *writeTx) Tasks() []*api.Task                { return list[*api.Task](tx, KindTask) }
func (tx *writeTx) Networks() []*api.Network          { return list[*api.Network](tx, KindNetwork) }
func (tx *writeTx) GetSecret(id string) *api.Secret   { return get[*api.Secret](tx, KindSecret, id) }
func (tx *writeTx) GetConfig(id string) *api.Config   { return get[*api.Config](tx, KindConfig, id) }
func (tx *writeTx) Secrets() []*api.Secret            { return list[*api.Secret](tx, KindSecret) }
func (tx *writeTx) Configs() []*api.Config            { return list[*api.Config](tx, KindConfig) }

func (tx *writeTx) tasksByTx(match func(*api.Task) bool, stored []*api.Task) []*api.Task {
	if len(tx.changes) == 0 {
		return stored
	}
	var out []*api.Task
	for _, t := range stored {
		if _, ok := tx.pending(KindTask, t.Id); !ok {
			out = append(out, t)
		}
	}
	for _, c := range tx.order {
		if t, ok := c.obj.(*api.Task); ok && match(t) {
			out = append(out, proto.Clone(t).(*api.Task))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

func (tx *writeTx) TasksOfService(id string) []*api.Task {
	return tx.tasksByTx(func(t *api.Task) bool { return t.ServiceId == id }, tx.readTx.TasksOfService(id))
}

func (tx *writeTx) TasksOnNode(id string) []*api.Task {
	return tx.tasksByTx(func(t *api.Task) bool { return t.NodeId == id }, tx.readTx.TasksOnNode(id))
}

func (tx *writeTx) Create(o Object) error {
	k, ok := KindOf(o)
	if !ok || o == nil {
		return fmt.Errorf("create %T: %w", o, ErrInvalidObject)
	}
	o = proto.Clone(o).(Object)
	if o.GetId() == "" {
		setID(o, NewID())
	}
	ts := timestamp(tx.now)
	setMeta(o, &api.Meta{CreatedAt: ts, UpdatedAt: ts})
	if c, ok := tx.pending(k, o.GetId()); ok && c.obj != nil {
		return objectError(k, o.GetId(), api.Wrap(api.ErrConflict, fmt.Errorf("%s %s already exists", k, o.GetId())))
	} else if !ok && tx.peek(k, o.GetId()) != nil {
		return objectError(k, o.GetId(), api.Wrap(api.ErrConflict, fmt.Errorf("%s %s already exists", k, o.GetId())))
	}
	if name := uniqueName(o); name != "" && tx.GetByName(k, name) != nil {
		return objectError(k, o.GetId(), api.Wrap(api.ErrConflict, fmt.Errorf("%s name %q is in use", k, name)))
	}
	tx.record(&change{kind: k, id: o.GetId(), action: api.StoreAction_CREATE, obj: o, created: true})
	return nil
}

func (tx *writeTx) Update(o Object) error {
	k, ok := KindOf(o)
	if !ok || o == nil || o.GetId() == "" {
		return fmt.Errorf("update %T: %w", o, ErrInvalidObject)
	}
	o = proto.Clone(o).(Object)
	cur := tx.peek(k, o.GetId())
	if cur == nil {
		return objectError(k, o.GetId(), api.Wrap(api.ErrNotFound, fmt.Errorf("%s %s not found", k, o.GetId())))
	}
	if o.GetMeta().GetVersion() != cur.GetMeta().GetVersion() {
		return objectError(k, o.GetId(), api.Wrap(api.ErrConflict, fmt.Errorf("update %s %s: out of sequence (read version %d, stored %d)",
			k, o.GetId(), o.GetMeta().GetVersion(), cur.GetMeta().GetVersion())))
	}
	setMeta(o, &api.Meta{Version: cur.GetMeta().GetVersion(), CreatedAt: cur.GetMeta().GetCreatedAt(), UpdatedAt: timestamp(tx.now)})
	c := &change{kind: k, id: o.GetId(), action: api.StoreAction_UPDATE, obj: o}
	if prev, ok := tx.pending(k, o.GetId()); ok && prev.created {
		c.action, c.created = api.StoreAction_CREATE, true
	}
	tx.record(c)
	return nil
}

func (tx *writeTx) Delete(k Kind, id string) error {
	if k < 0 || k >= numKinds || id == "" {
		return fmt.Errorf("delete %s %q: %w", k, id, ErrInvalidObject)
	}
	if cur := tx.peek(k, id); cur == nil {
		return objectError(k, id, api.Wrap(api.ErrNotFound, fmt.Errorf("%s %s not found", k, id)))
	}
	if prev, ok := tx.pending(k, id); ok && prev.created {
		// Created and deleted in one transaction: nothing to propose. The
		// entry stays (as a no-op) so Get keeps answering nil.
		*prev = change{kind: k, id: id}
		return nil
	}
	tx.record(&change{kind: k, id: id, action: api.StoreAction_REMOVE})
	return nil
}

func (tx *writeTx) proposal() *api.Proposal {
	p := &api.Proposal{}
	for _, c := range tx.order {
		switch c.action {
		case api.StoreAction_CREATE, api.StoreAction_UPDATE:
			p.Actions = append(p.Actions, actionFor(c.action, c.obj))
		case api.StoreAction_REMOVE:
			o := emptyOf(c.kind)
			setID(o, c.id)
			p.Actions = append(p.Actions, actionFor(c.action, o))
		}
	}
	return p
}
