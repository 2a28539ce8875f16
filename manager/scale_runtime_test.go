package manager

import (
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"runtime/trace"
	"slices"
	"sync"
	"time"
)

// runtimeSample is what the Go runtime measured in this process until
// now: how long goroutines waited runnable for a CPU, the GC's
// stop-the-world pauses and its CPU. The scale bench takes one at the start
// and one at the end and prints the difference, in the managers' process
// and in the agents', so that a heartbeat's wait can be told apart from
// the work on its way.
type runtimeSample struct {
	sched, pauses    *metrics.Float64Histogram
	gcCPU, totalCPU  float64
	gcCycles         uint64
	assistCPU, idleC float64
}

var runtimeMetrics = []string{
	"/sched/latencies:seconds",
	"/sched/pauses/total/gc:seconds",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/total:cpu-seconds",
	"/gc/cycles/total:gc-cycles",
	"/cpu/classes/gc/mark/assist:cpu-seconds",
	"/cpu/classes/idle:cpu-seconds",
}

func sampleRuntime() runtimeSample {
	s := make([]metrics.Sample, len(runtimeMetrics))
	for i, n := range runtimeMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	var r runtimeSample
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		r.sched = s[0].Value.Float64Histogram()
	}
	if s[1].Value.Kind() == metrics.KindFloat64Histogram {
		r.pauses = s[1].Value.Float64Histogram()
	}
	if s[2].Value.Kind() == metrics.KindFloat64 {
		r.gcCPU = s[2].Value.Float64()
	}
	if s[3].Value.Kind() == metrics.KindFloat64 {
		r.totalCPU = s[3].Value.Float64()
	}
	if s[4].Value.Kind() == metrics.KindUint64 {
		r.gcCycles = s[4].Value.Uint64()
	}
	if s[5].Value.Kind() == metrics.KindFloat64 {
		r.assistCPU = s[5].Value.Float64()
	}
	if s[6].Value.Kind() == metrics.KindFloat64 {
		r.idleC = s[6].Value.Float64()
	}
	return r
}

// runtimeDelta is the difference of two samples, printable.
type runtimeDelta struct {
	SchedP50, SchedP99, SchedMax time.Duration
	Runnable                     uint64
	PauseP99, PauseMax           time.Duration
	Pauses                       uint64
	GCCycles                     uint64
	// GCShare and AssistShare are the GC's CPU (all of it, and the part
	// goroutines paid in mark assists) as a share of the process's
	// non-idle CPU time as the runtime counts it.
	GCShare, AssistShare float64
}

func (a runtimeSample) delta(b runtimeSample) runtimeDelta {
	var d runtimeDelta
	d.SchedP50, d.SchedP99, d.SchedMax, d.Runnable = histDelta(a.sched, b.sched)
	_, d.PauseP99, d.PauseMax, d.Pauses = histDelta(a.pauses, b.pauses)
	d.GCCycles = b.gcCycles - a.gcCycles
	if busy := (b.totalCPU - b.idleC) - (a.totalCPU - a.idleC); busy > 0 {
		d.GCShare = (b.gcCPU - a.gcCPU) / busy
		d.AssistShare = (b.assistCPU - a.assistCPU) / busy
	}
	return d
}

func (d runtimeDelta) String() string {
	return fmt.Sprintf("runnable->running p50 %v / p99 %v / max %v (%d waits); GC %d cycles, %.0f%% of CPU (assists %.0f%%), STW p99 %v / max %v",
		d.SchedP50, d.SchedP99, d.SchedMax, d.Runnable, d.GCCycles, 100*d.GCShare, 100*d.AssistShare, d.PauseP99, d.PauseMax)
}

// histDelta is the p50, p99 and largest value of what b counted beyond a
// (both cumulative, same buckets), each the upper bound of its bucket, and
// how many values that is.
func histDelta(a, b *metrics.Float64Histogram) (p50, p99, maxv time.Duration, n uint64) {
	if a == nil || b == nil || len(a.Counts) != len(b.Counts) {
		return 0, 0, 0, 0
	}
	counts := make([]uint64, len(b.Counts))
	for i := range counts {
		counts[i] = b.Counts[i] - a.Counts[i]
		n += counts[i]
	}
	if n == 0 {
		return 0, 0, 0, 0
	}
	bound := func(i int) time.Duration {
		v := b.Buckets[i+1]
		if math.IsInf(v, 1) {
			v = b.Buckets[i]
		}
		return time.Duration(v * float64(time.Second))
	}
	var seen uint64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if seen < (n+1)/2 && seen+c >= (n+1)/2 {
			p50 = bound(i)
		}
		if seen < n*99/100+1 && seen+c >= n*99/100+1 {
			p99 = bound(i)
		}
		seen += c
		maxv = bound(i)
	}
	return p50, p99, maxv, n
}

// runnableNow is how many goroutines of this process are runnable (ready,
// waiting for a CPU) at this moment.
func runnableNow() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// counts collects samples of a count (runnable goroutines).
type counts []uint64

func (c counts) String() string {
	if len(c) == 0 {
		return "none"
	}
	s := slices.Clone([]uint64(c))
	slices.Sort(s)
	return fmt.Sprintf("p50 %d / p99 %d / max %d (%d samples)", s[len(s)/2], s[len(s)*99/100], s[len(s)-1], len(s))
}

// startTrace writes an execution trace to file for d (or until the
// returned stop is called).
func startTrace(file string, d time.Duration) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("trace: %w", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			trace.Stop()
			f.Close()
		})
	}
	time.AfterFunc(d, stop)
	return stop, nil
}
