package raftstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// ErrBadProposal is returned for a proposal that cannot be applied as
// written (no target, unknown action). Like every refusal it is decided
// identically on every replica.
var ErrBadProposal = api.Wrap(api.ErrInvalidArgument, errors.New("raftstore: malformed proposal"))

// ObjectError is a proposal's refusal because of one of its objects (a
// stale version, a missing object, a name in use, a backward task state).
// It unwraps to the reason, classified with the api error classes.
type ObjectError struct {
	Kind Kind
	ID   string
	Err  error
}

func objectError(k Kind, id string, err error) error { return &ObjectError{Kind: k, ID: id, Err: err} }

func (e *ObjectError) Error() string { return e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }

// staged is an action checked against the state as changed by the
// proposal's earlier actions.
type staged struct {
	kind   Kind
	id     string
	action api.StoreAction_Kind
	obj    Object // new object; nil for REMOVE
	old    Object // previous object; nil for CREATE
}

// applyLocked applies every proposal of one raft entry at index and returns
// each proposal's result and the events to publish. s.mu must be held for
// writing. owned says the batch's objects are this call's alone (decoded
// from the raft entry, or cloned): they are then stored as they are instead
// of copied once more while every reader waits for the lock.
//
// Determinism: the result and the new state depend only on the current state,
// index and the batch. Proposals and actions are taken in order; maps are only
// looked up, never iterated; times come from the proposal.
func (s *MemoryStore) applyLocked(index uint64, batch *api.ProposalBatch, owned bool) ([]error, []Event) {
	results := make([]error, len(batch.GetProposals()))
	var events []Event
	nodesChanged := false
	for i, p := range batch.GetProposals() {
		st, err := s.check(index, p, owned)
		if err != nil {
			results[i] = err
			continue
		}
		for _, c := range st {
			s.commit(c)
			events = append(events, Event{Kind: c.kind, Action: c.action, Object: c.obj, Old: c.old, Version: index})
			nodesChanged = nodesChanged || c.kind == KindNode || c.kind == KindCluster
		}
	}
	if index > s.index {
		s.index = index
	}
	if nodesChanged {
		s.publishNodesLocked()
	}
	return results, events
}

// check validates p's actions in order against the state plus the effect of
// the earlier ones, and returns the staged changes or the first refusal.
// Unless owned, the stored objects are copies of p's.
func (s *MemoryStore) check(index uint64, p *api.Proposal, owned bool) (_ []staged, err error) {
	// A refusal names the object it is about, so that a writer of many
	// objects can set that one aside and write the others (ObjectError).
	var at struct {
		k  Kind
		id string
	}
	defer func() {
		if err != nil && at.id != "" {
			err = objectError(at.k, at.id, err)
		}
	}()
	out := make([]staged, 0, len(p.GetActions()))
	// overlay: what earlier actions of this proposal did (nil = removed).
	overlay := make(map[[2]string]Object)
	names := make(map[[2]string]string) // kind, name -> id, as changed by this proposal
	lookup := func(k Kind, id string) Object {
		if o, ok := overlay[changeKey(k, id)]; ok {
			return o
		}
		return s.tables[k][id]
	}
	nameOwner := func(k Kind, name string) string {
		// The owner may have been renamed or removed earlier in this proposal.
		for _, id := range []string{names[[2]string{kindNames[k], name}], s.byName[k][name]} {
			if o := lookup(k, id); id != "" && o != nil && uniqueName(o) == name {
				return id
			}
		}
		return ""
	}
	for n, a := range p.GetActions() {
		at.id = ""
		target, k, ok := actionTarget(a)
		if !ok || target.GetId() == "" {
			return nil, fmt.Errorf("action %d: %w", n, ErrBadProposal)
		}
		id := target.GetId()
		at.k, at.id = k, id
		cur := lookup(k, id)
		c := staged{kind: k, id: id, action: a.GetKind(), old: cur}
		switch a.GetKind() {
		case api.StoreAction_CREATE:
			if cur != nil {
				return nil, api.Wrap(api.ErrConflict, fmt.Errorf("%s %s already exists", k, id))
			}
		case api.StoreAction_UPDATE:
			if cur == nil {
				return nil, api.Wrap(api.ErrNotFound, fmt.Errorf("%s %s not found", k, id))
			}
			if have, want := target.GetMeta().GetVersion(), cur.GetMeta().GetVersion(); have != want {
				return nil, api.Wrap(api.ErrConflict,
					fmt.Errorf("update %s %s: out of sequence (read version %d, stored %d)", k, id, have, want))
			}
			if t, ok := target.(*api.Task); ok {
				// The store is the last guard of forward-only task states.
				old := cur.(*api.Task).GetStatus().GetState()
				if err := api.CheckTransition(old, t.GetStatus().GetState(), api.TaskState_NEW); err != nil {
					var te *api.TransitionError
					if errors.As(err, &te) {
						te.TaskID = id
					}
					return nil, err
				}
			}
		case api.StoreAction_REMOVE:
			if cur == nil {
				return nil, api.Wrap(api.ErrNotFound, fmt.Errorf("%s %s not found", k, id))
			}
			if v := target.GetMeta().GetVersion(); v != 0 && v != cur.GetMeta().GetVersion() {
				return nil, api.Wrap(api.ErrConflict, fmt.Errorf("remove %s %s: out of sequence", k, id))
			}
		default:
			return nil, fmt.Errorf("action %d kind %v: %w", n, a.GetKind(), ErrBadProposal)
		}
		if a.GetKind() != api.StoreAction_REMOVE {
			obj := target
			if !owned {
				obj = proto.Clone(target).(Object)
			}
			m := &api.Meta{Version: index, CreatedAt: target.GetMeta().GetCreatedAt(), UpdatedAt: target.GetMeta().GetUpdatedAt()}
			if cur != nil {
				m.CreatedAt = cur.GetMeta().GetCreatedAt()
			}
			setMeta(obj, m)
			if name := uniqueName(obj); name != "" {
				if owner := nameOwner(k, name); owner != "" && owner != id {
					return nil, api.Wrap(api.ErrConflict, fmt.Errorf("%s name %q is in use by %s", k, name, owner))
				}
				names[[2]string{kindNames[k], name}] = id
			}
			c.obj = obj
		}
		overlay[changeKey(k, id)] = c.obj
		out = append(out, c)
	}
	return out, nil
}

// commit writes one checked change into the tables and indexes.
func (s *MemoryStore) commit(c staged) {
	if c.old != nil {
		s.unindex(c.kind, c.old)
	}
	if c.obj == nil {
		delete(s.tables[c.kind], c.id)
		return
	}
	s.tables[c.kind][c.id] = c.obj
	s.index1(c.kind, c.obj)
}

func (s *MemoryStore) index1(k Kind, o Object) {
	if name := uniqueName(o); name != "" {
		s.byName[k][name] = o.GetId()
	}
	if t, ok := o.(*api.Task); ok {
		addTo(s.tasksBy[byService], t.GetServiceId(), t.GetId())
		addTo(s.tasksBy[byNode], t.GetNodeId(), t.GetId())
	}
}

func (s *MemoryStore) unindex(k Kind, o Object) {
	if name := uniqueName(o); name != "" && s.byName[k][name] == o.GetId() {
		delete(s.byName[k], name)
	}
	if t, ok := o.(*api.Task); ok {
		removeFrom(s.tasksBy[byService], t.GetServiceId(), t.GetId())
		removeFrom(s.tasksBy[byNode], t.GetNodeId(), t.GetId())
	}
}

func addTo(m map[string]map[string]struct{}, key, id string) {
	if key == "" {
		return
	}
	set := m[key]
	if set == nil {
		set = make(map[string]struct{})
		m[key] = set
	}
	set[id] = struct{}{}
}

func removeFrom(m map[string]map[string]struct{}, key, id string) {
	if set := m[key]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// ErrStaleIndex refuses an entry at or below the last applied index; raft
// never sends one, so seeing it means a caller is replaying by mistake.
var ErrStaleIndex = errors.New("raftstore: entry index already applied")

// Apply applies one raft entry, the batch of proposals at index, and returns
// each proposal's result (nil or why it was refused; a refused proposal
// changes nothing). This is the FSM's transition function; Node calls it for
// every committed entry and tests call it directly; batch stays the
// caller's (its objects are copied).
func (s *MemoryStore) Apply(index uint64, batch *api.ProposalBatch) []error {
	return s.apply(index, batch, false)
}

// apply is Apply; owned as applyLocked's.
func (s *MemoryStore) apply(index uint64, batch *api.ProposalBatch, owned bool) []error {
	s.mu.Lock()
	if index <= s.index {
		defer s.mu.Unlock()
		errs := make([]error, len(batch.GetProposals()))
		for i := range errs {
			errs[i] = fmt.Errorf("apply index %d (last %d): %w", index, s.index, ErrStaleIndex)
		}
		return errs
	}
	return s.applyAndPublish(index, batch, owned)
}
