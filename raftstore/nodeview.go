package raftstore

import "github.com/shoal-project/shoal/api"

// nodeView is the nodes and the cluster count as of the last applied entry,
// published after each apply that changed one, for readers that must not
// wait for the store's lock: the authorization of every worker call (a
// heartbeat included) looks up its node, and an Apply of a few thousand
// tasks holds the write lock for tens of milliseconds, longer on a loaded
// machine, with every reader queued behind it. Nodes are few (thousands)
// and change rarely next to tasks, so copying the map on a change is cheap.
type nodeView struct {
	nodes    map[string]*api.Node
	clusters int
}

// publishNodesLocked rebuilds the node view from the tables; s.mu held (or
// s not yet shared).
func (s *MemoryStore) publishNodesLocked() {
	v := &nodeView{nodes: make(map[string]*api.Node, len(s.tables[KindNode])), clusters: len(s.tables[KindCluster])}
	for id, o := range s.tables[KindNode] {
		v.nodes[id] = o.(*api.Node)
	}
	s.nodes.Store(v)
}

// PeekNode returns node id as of the last applied entry (nil if there is
// none) and whether the store holds a cluster, without taking the store's
// lock. The node is the store's own, shared: read it, never modify it.
func (s *MemoryStore) PeekNode(id string) (n *api.Node, hasCluster bool) {
	v := s.nodes.Load()
	if v == nil {
		return nil, false
	}
	return v.nodes[id], v.clusters > 0
}
