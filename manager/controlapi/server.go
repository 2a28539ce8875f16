// Package controlapi serves api.Control, the managers' API for users: it
// validates what users ask for (services, node updates, cluster settings)
// and turns it into store transactions. It decides nothing else: tasks are
// made by the orchestrators, placed by the scheduler, and raft membership
// follows a node's desired role in the manager loop.
//
// Choices where Swarm's behaviour is not forced by the protos:
//   - Lookups (Get*, the IDs of Update*/Remove*) accept a full ID, then a
//     unique name (services, networks, secrets, configs; a node's hostname),
//     then a unique ID prefix, as the docker CLI resolves them.
//   - spec_version is a counter: 1 at create, +1 on every spec change
//     (update or rollback). An update that changes nothing writes nothing.
//   - RemoveService deletes only the service. Its tasks are left to the
//     orchestrator's history reaper, which asks them to shut down (desired
//     REMOVE) and deletes them once they are over; doing it here would put
//     thousands of task writes into one proposal and duplicate that logic.
//   - RemoveNode deletes the node; its tasks are orphaned by the orchestrator.
//   - A node's role change is written as spec.desired_role only; the manager
//     loop changes raft membership and node.role afterwards.
//   - Quorum: a manager is reachable if its ManagerStatus says REACHABLE, or
//     says nothing (UNKNOWN) while the node's status is READY.
//
// Every RPC method returns errors converted with api.ToGRPC, so an error's
// class (api.ErrNotFound, ...) survives the hop; the client gets it back with
// api.FromGRPC.
package controlapi

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Store is what the server needs of the replicated store;
// *raftstore.MemoryStore provides it.
type Store interface {
	View(fn func(raftstore.ReadTx))
	Update(ctx context.Context, fn func(raftstore.WriteTx) error) error
	Watch(kinds ...raftstore.Kind) *raftstore.Watcher
}

// Server implements api.ControlServer over a Store.
type Server struct {
	api.UnimplementedControlServer

	store Store
	now   func() time.Time
	newID func() string
}

// NewServer returns a Control server over store. now stamps times the server
// writes itself (update status); newID names created objects. nil means
// time.Now and raftstore.NewID.
func NewServer(store Store, now func() time.Time, newID func() string) *Server {
	if now == nil {
		now = time.Now
	}
	if newID == nil {
		newID = raftstore.NewID
	}
	return &Server{store: store, now: now, newID: newID}
}

var _ api.ControlServer = (*Server)(nil)

// wire converts err for the gRPC boundary and drops a response that comes with an error.
func wire[T any](r T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, api.ToGRPC(err)
	}
	return r, nil
}

func notFound(format string, args ...any) error {
	return api.Wrap(api.ErrNotFound, fmt.Errorf(format, args...))
}

func invalid(format string, args ...any) error {
	return api.Wrap(api.ErrInvalidArgument, fmt.Errorf(format, args...))
}

func conflict(format string, args ...any) error {
	return api.Wrap(api.ErrConflict, fmt.Errorf(format, args...))
}

func precondition(format string, args ...any) error {
	return api.Wrap(api.ErrFailedPrecondition, fmt.Errorf(format, args...))
}

// resolve finds the one object of kind k that ref names: its full ID, else
// the object whose names (from namesOf, which may be nil) include ref, else the
// object whose ID starts with ref. what names the kind in errors ("service").
// The object returned is a copy the caller owns.
func resolve(tx raftstore.ReadTx, k raftstore.Kind, what, ref string, namesOf func(raftstore.Object) []string) (raftstore.Object, error) {
	if ref == "" {
		return nil, invalid("%s ID or name is required", what)
	}
	if o := tx.Get(k, ref); o != nil {
		return o, nil
	}
	var byName, byPrefix []raftstore.Object
	tx.ForEach(k, func(o raftstore.Object) bool {
		if namesOf != nil {
			for _, n := range namesOf(o) {
				if n == ref {
					byName = append(byName, o)
					break
				}
			}
		}
		if strings.HasPrefix(o.GetId(), ref) {
			byPrefix = append(byPrefix, o)
		}
		return true
	})
	for _, matches := range [][]raftstore.Object{byName, byPrefix} {
		switch len(matches) {
		case 0:
			continue
		case 1:
			return proto.Clone(matches[0]).(raftstore.Object), nil
		default:
			return nil, invalid("%s %s is ambiguous (%d matches): use its full ID", what, ref, len(matches))
		}
	}
	return nil, notFound("%s %s not found", what, ref)
}

// specName is the name in an object's spec annotations, for kinds looked up by name.
func specName(o raftstore.Object) []string {
	type annotated interface{ GetAnnotations() *api.Annotations }
	switch o := o.(type) {
	case *api.Service:
		return []string{o.GetSpec().GetAnnotations().GetName()}
	case *api.Network:
		return []string{o.GetSpec().GetAnnotations().GetName()}
	case *api.Secret:
		return []string{o.GetSpec().GetAnnotations().GetName()}
	case *api.Config:
		return []string{o.GetSpec().GetAnnotations().GetName()}
	case annotated:
		return []string{o.GetAnnotations().GetName()}
	}
	return nil
}

// filter is the common part of the List filters: names, ID prefixes, labels.
// Empty parts match everything.
type filter struct {
	names    []string
	prefixes []string
	labels   map[string]string
}

func (f filter) match(id string, names []string, labels map[string]string) bool {
	if len(f.names) > 0 && !anyIn(names, f.names) {
		return false
	}
	if len(f.prefixes) > 0 {
		ok := false
		for _, p := range f.prefixes {
			if strings.HasPrefix(id, p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	// A label filter with an empty value asks only that the key is present,
	// as `--filter label=KEY` does in Docker.
	for k, v := range f.labels {
		have, ok := labels[k]
		if !ok || (v != "" && have != v) {
			return false
		}
	}
	return true
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

func in[T comparable](v T, set []T) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t.UTC()) }

func dedup(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
