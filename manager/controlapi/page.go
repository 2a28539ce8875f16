package controlapi

import (
	"sort"

	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// Paging of the List calls. Without it a list of 100,000 tasks is a message
// of tens of MiB, over gRPC's 4 MiB default, and `service ps` fails.
const (
	// DefaultPageSize is the page size of a request that sets none.
	DefaultPageSize = 5000
	// MaxListPageBytes ends a page early: under gRPC's 4 MiB default
	// receive limit whatever the size of the objects.
	MaxListPageBytes = 2 << 20
)

// listPage filters the shared (not cloned) objects of kind k, keeps those
// with an ID after token, and returns the first page of them sorted by ID,
// cloned, with the token of the next page ("" when none follow). Objects
// are only cloned once they are on the page, so paging through a large
// table costs one scan of pointers per page.
func listPage[T raftstore.Object](candidates []T, keep func(T) bool, token string, size uint32) ([]T, string) {
	if size == 0 {
		size = DefaultPageSize
	}
	var after []T
	for _, o := range candidates {
		if o.GetId() > token && keep(o) {
			after = append(after, o)
		}
	}
	sort.Slice(after, func(i, j int) bool { return after[i].GetId() < after[j].GetId() })
	var (
		out   []T
		bytes int
	)
	for _, o := range after {
		n := proto.Size(o)
		if len(out) > 0 && (len(out) == int(size) || bytes+n > MaxListPageBytes) {
			return out, out[len(out)-1].GetId()
		}
		bytes += n
		out = append(out, proto.Clone(o).(T))
	}
	return out, ""
}

// shared lists the stored objects of kind k without copying them; only
// listPage's output may leave the read transaction.
func shared[T raftstore.Object](tx raftstore.ReadTx, k raftstore.Kind) []T {
	var out []T
	tx.ForEach(k, func(o raftstore.Object) bool {
		out = append(out, o.(T))
		return true
	})
	return out
}
