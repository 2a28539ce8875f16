package tests

import (
	"fmt"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// benchEncryptSubnet is the encrypted network of BenchmarkEncryptOverlay,
// beside benchOverlaySubnet's plaintext one.
const benchEncryptSubnet = "198.19.254.0/24"

// BenchmarkEncryptOverlay: iperf3 between two tasks on two test hosts over
// an encrypted overlay (VXLAN inside ESP with AEGIS-128L, in user space) beside the same
// over a plaintext overlay, in one run, as a ratio (issue 7's target: at
// least 50 %). BENCH_IPERF_SECONDS (10) per run.
func BenchmarkEncryptOverlay(b *testing.B) {
	b.StopTimer()
	s, h1, h2, secs := benchIperfSwarm(b)
	benchRemoveService(b, s, func() *harness.Host { return h1 }, "nb", "eb")
	h1.Daemon.Must("network", "create", "-d", "overlay", "--subnet", benchOverlaySubnet, "nbnet")
	h1.Daemon.Must("network", "create", "-d", "overlay", "--opt", "encrypted", "--subnet", benchEncryptSubnet, "ebnet")
	h1.Daemon.Must("service", "create", "-d", "--name", "nb", "--mode", "global", "--network", "nbnet", "busybox:latest", "sleep", "3600")
	h1.Daemon.Must("service", "create", "-d", "--name", "eb", "--mode", "global", "--network", "ebnet", "busybox:latest", "sleep", "3600")
	p1, p2 := benchOverlayTask(b, h1, "nb"), benchOverlayTask(b, h2, "nb")
	e1, e2 := benchOverlayTaskOn(b, h1, "eb", benchEncryptSubnet), benchOverlayTaskOn(b, h2, "eb", benchEncryptSubnet)
	load := benchLoadavg()
	b.StartTimer()
	// Alternating, twice each, so the load of the moment falls on both.
	var plain, enc float64
	for range 2 {
		plain += benchIperf(b, p2, p1, secs) / 2
		enc += benchIperf(b, e2, e1, secs) / 2
	}
	b.StopTimer()
	b.ReportMetric(enc, "Gbit/s-encrypted")
	fmt.Printf("encrypt overlay: %s to %s (iperf3 -t %d, 1 stream, mean of 2 runs each; load %s)\n", h1.Name, h2.Name, secs, load)
	benchLine("encrypt iperf3: plaintext overlay, task to task", fmt.Sprintf("%.2f", plain), "Gb/s", "(anchor)")
	benchLine("encrypt iperf3: encrypted overlay (user-space ESP, AEGIS-128L)", fmt.Sprintf("%.2f", enc), "Gb/s",
		fmt.Sprintf("%s of the plaintext overlay; target >= 0.50x", benchRatio(enc, plain)))
}
