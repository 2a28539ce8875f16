package containers

import (
	"errors"
	"testing"
	"time"
)

// The back-off of dockerd's restart manager: 100 ms doubling to 1 min, and
// back to 100 ms after a run of 10 s or more.
func TestNextRestartDelay(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for i := 0; i < 12; i++ {
		d = nextRestartDelay(d, time.Second)
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	if d := nextRestartDelay(time.Minute, 10*time.Second); d != restartDelayMin {
		t.Fatalf("after a 10 s run: %v", d)
	}
}

func TestShouldRestart(t *testing.T) {
	for _, c := range []struct {
		p                   RestartPolicy
		code                int
		stopped, daemonBoot bool
		count               int
		want                bool
	}{
		{RestartPolicy{}, 1, false, false, 0, false},
		{RestartPolicy{Name: RestartNo}, 1, false, true, 0, false},
		{RestartPolicy{Name: RestartAlways}, 0, false, false, 5, true},
		{RestartPolicy{Name: RestartAlways}, 0, true, false, 0, false},
		{RestartPolicy{Name: RestartAlways}, 0, true, true, 0, true},
		{RestartPolicy{Name: RestartUnlessStopped}, 0, false, true, 0, true},
		{RestartPolicy{Name: RestartUnlessStopped}, 0, true, true, 0, false},
		{RestartPolicy{Name: RestartOnFailure}, 0, false, false, 0, false},
		{RestartPolicy{Name: RestartOnFailure}, 3, false, false, 100, true},
		{RestartPolicy{Name: RestartOnFailure, MaximumRetryCount: 2}, 3, false, false, 1, true},
		{RestartPolicy{Name: RestartOnFailure, MaximumRetryCount: 2}, 3, false, false, 2, false},
		{RestartPolicy{Name: RestartOnFailure}, 137, true, true, 0, false},
	} {
		if got := shouldRestart(c.p, c.code, c.stopped, c.count, c.daemonBoot); got != c.want {
			t.Errorf("shouldRestart(%+v, %d, stopped=%v, count=%d, boot=%v) = %v", c.p, c.code, c.stopped, c.count, c.daemonBoot, got)
		}
	}
}

func TestRestartPolicyValidate(t *testing.T) {
	for _, p := range []RestartPolicy{{Name: "foo"}, {Name: RestartOnFailure, MaximumRetryCount: -1}, {Name: RestartAlways, MaximumRetryCount: 2}} {
		if err := p.Validate(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v", p, err)
		}
	}
	for _, p := range []RestartPolicy{{}, {Name: RestartNo}, {Name: RestartOnFailure, MaximumRetryCount: 3}, {Name: RestartUnlessStopped}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

func TestApplyProbe(t *testing.T) {
	start := time.Unix(1000, 0)
	hc := HealthConfig{Retries: 2, StartPeriod: 10 * time.Second}
	h := Health{Status: HealthStarting}
	probe := func(at time.Duration, code int) {
		h = applyProbe(h, HealthResult{Start: start.Add(at), ExitCode: code}, hc, start)
	}
	probe(time.Second, 1) // within the start period: not counted
	probe(2*time.Second, 1)
	if h.Status != HealthStarting || h.FailingStreak != 0 {
		t.Fatalf("failures in the start period: %+v", h)
	}
	probe(3*time.Second, 0)
	if h.Status != HealthHealthy {
		t.Fatalf("after a pass: %+v", h)
	}
	probe(4*time.Second, 1) // healthy once: counted even in the start period
	if h.Status != HealthHealthy || h.FailingStreak != 1 {
		t.Fatalf("one failure: %+v", h)
	}
	probe(5*time.Second, 2)
	if h.Status != HealthUnhealthy || h.FailingStreak != 2 {
		t.Fatalf("two failures: %+v", h)
	}
	for i := 0; i < 5; i++ {
		probe(time.Duration(6+i)*time.Second, 1)
	}
	if len(h.Log) != maxHealthLog || !h.Log[0].Start.Equal(start.Add(6*time.Second)) {
		t.Fatalf("log keeps the last %d: %+v", maxHealthLog, h.Log)
	}
}

func TestMergeHealthcheck(t *testing.T) {
	img := &HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second, Retries: 5}
	if got := mergeHealthcheck(nil, img); got == nil || got.Test[1] != "true" || got.Retries != 5 {
		t.Fatalf("image's: %+v", got)
	}
	if got := mergeHealthcheck(&HealthConfig{Test: []string{"NONE"}}, img); got != nil {
		t.Fatalf("--no-healthcheck: %+v", got)
	}
	got := mergeHealthcheck(&HealthConfig{Interval: 2 * time.Second}, img)
	if got == nil || got.Test[1] != "true" || got.Interval != 2*time.Second || got.Retries != 5 {
		t.Fatalf("given interval over the image's test: %+v", got)
	}
	if got := mergeHealthcheck(&HealthConfig{Test: []string{"CMD-SHELL", "exit 0"}}, nil); got == nil || got.Test[0] != "CMD-SHELL" {
		t.Fatalf("given only: %+v", got)
	}
	for _, bad := range []HealthConfig{{Interval: -time.Second}, {Timeout: time.Microsecond}, {Retries: -1}, {Test: []string{"SHELL", "x"}}, {Test: []string{"CMD"}}} {
		if err := ValidateHealthcheck(&bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
