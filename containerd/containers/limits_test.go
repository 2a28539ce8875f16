package containers

import (
	"context"
	"testing"
	"time"
)

func TestOOMKilled(t *testing.T) {
	env := newEnv(t)
	// tail keeps the whole newline-free stream in memory: 64 MiB against a
	// 16 MiB limit ends in the OOM killer.
	c := env.run(Config{Cmd: []string{"sh", "-c", "head -c 67108864 /dev/zero | tail"}, Memory: 16 << 20})
	st := env.wait(c.ID, 30*time.Second)
	if !st.OOMKilled || st.ExitCode == 0 {
		t.Fatalf("state after exceeding the memory limit: %+v", st)
	}
	ok := env.run(Config{Cmd: []string{"true"}, Memory: 16 << 20})
	if st := env.wait(ok.ID, 10*time.Second); st.OOMKilled || st.ExitCode != 0 {
		t.Fatalf("a container within its limit: %+v", st)
	}
}

// BenchmarkRunTrue is create + start + wait + remove of /bin/true through
// the shim, the path `shoal run --rm` takes below the API.
func BenchmarkRunTrue(b *testing.B) {
	b.StopTimer()
	env := newEnv(b)
	ctx := context.Background()
	var start time.Duration
	for i := 0; i < b.N; i++ {
		b.StartTimer()
		c, err := env.e.Create(ctx, "", Config{Image: "busybox", Cmd: []string{"true"}, NetworkMode: "none"})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := env.e.Start(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		start += time.Since(t0)
		if _, err := env.e.Wait(ctx, c.ID, WaitNotRunning, nil); err != nil {
			b.Fatal(err)
		}
		if err := env.e.Remove(ctx, c.ID, false); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
	}
	b.ReportMetric(float64(start.Microseconds())/float64(b.N)/1000, "ms-start/op")
}
