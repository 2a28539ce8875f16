package raftstore

import (
	"crypto/rand"
	"fmt"
	"math/big"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Kind is a kind of stored object.
type Kind int

// The kinds, in the order snapshots encode them.
const (
	KindCluster Kind = iota
	KindNode
	KindService
	KindTask
	KindNetwork
	KindSecret
	KindConfig
	// KindRegistryRepository is one repository of the cluster registry
	// (manager/registry): tags and manifest records.
	KindRegistryRepository
	numKinds
)

var kindNames = [numKinds]string{"cluster", "node", "service", "task", "network", "secret", "config", "registry repository"}

func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Object is any stored object: *api.Cluster, *api.Node, *api.Service,
// *api.Task, *api.Network, *api.Secret, *api.Config or *api.RegistryRepository.
type Object interface {
	proto.Message
	GetId() string
	GetMeta() *api.Meta
}

// KindOf returns o's kind; ok is false for anything that is not stored.
func KindOf(o Object) (k Kind, ok bool) {
	switch o.(type) {
	case *api.Cluster:
		return KindCluster, true
	case *api.Node:
		return KindNode, true
	case *api.Service:
		return KindService, true
	case *api.Task:
		return KindTask, true
	case *api.Network:
		return KindNetwork, true
	case *api.Secret:
		return KindSecret, true
	case *api.Config:
		return KindConfig, true
	case *api.RegistryRepository:
		return KindRegistryRepository, true
	}
	return 0, false
}

func setMeta(o Object, m *api.Meta) {
	switch o := o.(type) {
	case *api.Cluster:
		o.Meta = m
	case *api.Node:
		o.Meta = m
	case *api.Service:
		o.Meta = m
	case *api.Task:
		o.Meta = m
	case *api.Network:
		o.Meta = m
	case *api.Secret:
		o.Meta = m
	case *api.Config:
		o.Meta = m
	case *api.RegistryRepository:
		o.Meta = m
	}
}

func setID(o Object, id string) {
	switch o := o.(type) {
	case *api.Cluster:
		o.Id = id
	case *api.Node:
		o.Id = id
	case *api.Service:
		o.Id = id
	case *api.Task:
		o.Id = id
	case *api.Network:
		o.Id = id
	case *api.Secret:
		o.Id = id
	case *api.Config:
		o.Id = id
	case *api.RegistryRepository:
		o.Id = id
	}
}

// name is the name that must be unique among objects of o's kind, or "".
// Services, networks, secrets and configs are looked up by name, as in
// Docker; nodes, tasks and clusters are not.
func uniqueName(o Object) string {
	switch o := o.(type) {
	case *api.Service:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Network:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Secret:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Config:
		return o.GetSpec().GetAnnotations().GetName()
	}
	return ""
}

func actionFor(kind api.StoreAction_Kind, o Object) *api.StoreAction {
	a := &api.StoreAction{Kind: kind}
	switch o := o.(type) {
	case *api.Cluster:
		a.Target = &api.StoreAction_Cluster{Cluster: o}
	case *api.Node:
		a.Target = &api.StoreAction_Node{Node: o}
	case *api.Service:
		a.Target = &api.StoreAction_Service{Service: o}
	case *api.Task:
		a.Target = &api.StoreAction_Task{Task: o}
	case *api.Network:
		a.Target = &api.StoreAction_Network{Network: o}
	case *api.Secret:
		a.Target = &api.StoreAction_Secret{Secret: o}
	case *api.Config:
		a.Target = &api.StoreAction_Config{Config: o}
	case *api.RegistryRepository:
		a.Target = &api.StoreAction_RegistryRepository{RegistryRepository: o}
	}
	return a
}

func actionTarget(a *api.StoreAction) (Object, Kind, bool) {
	switch t := a.GetTarget().(type) {
	case *api.StoreAction_Cluster:
		return t.Cluster, KindCluster, t.Cluster != nil
	case *api.StoreAction_Node:
		return t.Node, KindNode, t.Node != nil
	case *api.StoreAction_Service:
		return t.Service, KindService, t.Service != nil
	case *api.StoreAction_Task:
		return t.Task, KindTask, t.Task != nil
	case *api.StoreAction_Network:
		return t.Network, KindNetwork, t.Network != nil
	case *api.StoreAction_Secret:
		return t.Secret, KindSecret, t.Secret != nil
	case *api.StoreAction_Config:
		return t.Config, KindConfig, t.Config != nil
	case *api.StoreAction_RegistryRepository:
		return t.RegistryRepository, KindRegistryRepository, t.RegistryRepository != nil
	}
	return nil, 0, false
}

// emptyOf returns a new, empty object of kind k (for removals by ID).
func emptyOf(k Kind) Object {
	switch k {
	case KindCluster:
		return &api.Cluster{}
	case KindNode:
		return &api.Node{}
	case KindService:
		return &api.Service{}
	case KindTask:
		return &api.Task{}
	case KindNetwork:
		return &api.Network{}
	case KindSecret:
		return &api.Secret{}
	case KindConfig:
		return &api.Config{}
	case KindRegistryRepository:
		return &api.RegistryRepository{}
	}
	return nil
}

// NewID returns a random object ID: 25 base-36 characters (128 bits), the
// shape of Swarm's IDs. IDs are made by the writer before proposing, never by
// Apply, which must be deterministic.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: since Go 1.24 a broken system source crashes the program instead
	s := new(big.Int).SetBytes(b[:]).Text(36)
	for len(s) < 25 {
		s = "0" + s
	}
	return s
}
