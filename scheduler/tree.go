package scheduler

import (
	"container/heap"
	"sort"
)

// The placement tree: one level per placement preference, each branch one
// value of that preference's label, the leaves heaps of candidate nodes.
// Picking descends from the root through the branch with the fewest tasks of
// the service (then the smallest label value) to the leaf's best node. Each
// level is a heap, so a pick costs O(depth · log width) and a batch of T tasks
// O(T log N), which is what lets one pass place 100,000 tasks.
//
// Without preferences the tree is a single leaf holding every candidate.

// cand is a node that passed the static filters for one group.
type cand struct {
	n   *nodeState
	svc int // tasks of the group's service on the node
	// fails are the service's recent failures on the node: static in a pass.
	fails int
	pos   int // index in leaf.nodes
	leaf  *branch
}

// branch is a tree node: internal (kids) or leaf (nodes).
type branch struct {
	value  string
	count  int // tasks of the service under this branch
	parent *branch
	pos    int // index in parent.kids
	kids   kidHeap
	nodes  candHeap
	leaf   bool
}

func buildTree(cands []*cand, prefs []preference) *branch {
	root := &branch{}
	fill(root, cands, prefs)
	return root
}

func fill(b *branch, cands []*cand, prefs []preference) {
	for _, c := range cands {
		b.count += c.svc
	}
	if len(prefs) == 0 {
		b.leaf = true
		b.nodes = make(candHeap, len(cands))
		copy(b.nodes, cands)
		for i, c := range b.nodes {
			c.pos, c.leaf = i, b
		}
		heap.Init(&b.nodes)
		return
	}
	byValue := make(map[string][]*cand)
	for _, c := range cands {
		v := prefs[0].value(c.n.info.Node)
		byValue[v] = append(byValue[v], c)
	}
	values := make([]string, 0, len(byValue))
	for v := range byValue {
		values = append(values, v)
	}
	sort.Strings(values) // no map-order effects on the result
	for _, v := range values {
		kid := &branch{value: v, parent: b}
		fill(kid, byValue[v], prefs[1:])
		kid.pos = len(b.kids)
		b.kids = append(b.kids, kid)
	}
	heap.Init(&b.kids)
}

// pick returns the best candidate under b, or nil if none is left.
func (b *branch) pick() *cand {
	for !b.leaf {
		if len(b.kids) == 0 {
			return nil
		}
		b = b.kids[0]
	}
	if len(b.nodes) == 0 {
		return nil
	}
	return b.nodes[0]
}

// placed records one more task on c and restores heap order up the tree.
func (b *branch) placed(c *cand) {
	heap.Fix(&b.nodes, c.pos)
	for x := b; x != nil; x = x.parent {
		x.count++
		if x.parent != nil {
			heap.Fix(&x.parent.kids, x.pos)
		}
	}
}

// remove drops c for the rest of the group (it failed a filter that this
// group's own decisions only make worse) and prunes branches left empty, so
// pick never descends into a dead end.
func (b *branch) remove(c *cand) {
	heap.Remove(&b.nodes, c.pos)
	x := b
	for x.parent != nil && x.empty() {
		heap.Remove(&x.parent.kids, x.pos)
		x = x.parent
	}
}

func (b *branch) empty() bool {
	if b.leaf {
		return len(b.nodes) == 0
	}
	return len(b.kids) == 0
}

// candHeap orders nodes by recent failures of the service, then tasks of the
// service, then tasks not yet running (a node that starts faster takes the
// next task among equals: back-pressure from the nodes' start windows), then
// all tasks, then ID.
type candHeap []*cand

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.fails != b.fails {
		return a.fails < b.fails
	}
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if a.n.backlog != b.n.backlog {
		return a.n.backlog < b.n.backlog
	}
	if a.n.total != b.n.total {
		return a.n.total < b.n.total
	}
	return a.n.id < b.n.id
}
func (h candHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *candHeap) Push(x any) { c := x.(*cand); c.pos = len(*h); *h = append(*h, c) }
func (h *candHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// kidHeap orders branches by tasks of the service, then label value.
type kidHeap []*branch

func (h kidHeap) Len() int { return len(h) }
func (h kidHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count < h[j].count
	}
	return h[i].value < h[j].value
}
func (h kidHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *kidHeap) Push(x any) { b := x.(*branch); b.pos = len(*h); *h = append(*h, b) }
func (h *kidHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	*h = old[:len(old)-1]
	return b
}
