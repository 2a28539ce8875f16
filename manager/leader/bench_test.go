package leader

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-project/shoal/raftstore"
)

// BenchmarkConverge measures, in-process without raft, the time from a
// service's creation until all its replicas are created and assigned: the
// leader loops' share of `service create` convergence.
func BenchmarkConverge(b *testing.B) {
	for _, c := range []struct{ replicas, nodes int }{{30, 5}, {1000, 10}, {10000, 100}} {
		b.Run(fmt.Sprintf("%dreplicas_%dnodes", c.replicas, c.nodes), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s := raftstore.NewMemoryStore(nil, nil)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- Run(ctx, s, RealClock{}) }()
				addNodes(b, s, c.nodes)
				b.StartTimer()
				svc := createService(b, s, newService("bench", uint64(c.replicas)))
				for {
					if ok, _, _ := placed(s, svc, c.replicas, ""); ok {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
				b.StopTimer()
				cancel()
				<-done
			}
		})
	}
}
