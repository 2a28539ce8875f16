package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// Healthchecks, as dockerd's (moby daemon/health.go): a probe runs in the
// running container, as an exec, every Interval (StartInterval during the
// StartPeriod while the container is still "starting"); it passes when it
// exits 0. The status starts as "starting", turns "healthy" at the first
// pass and "unhealthy" after Retries failures in a row; failures within the
// StartPeriod do not count while the container has never been healthy. A
// probe that outlives Timeout is killed and fails. State.Health keeps the
// last five results, each with up to 4 KiB of the probe's output.
//
// One goroutine per running container with a healthcheck runs its probes;
// it ends when the container exits (setExited cancels it) or the engine's
// context ends. A start resets the status to "starting" and the failing
// streak to 0 (a restarted container proves itself again), keeping the log.

// HealthConfig is a container's healthcheck: the image's HEALTHCHECK type.
type HealthConfig = images.Healthcheck

// Health statuses.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Health is the healthcheck's state of a container (Docker's State.Health).
type Health struct {
	Status        string         `json:"status"`
	FailingStreak int            `json:"failingStreak"`
	Log           []HealthResult `json:"log,omitempty"`
}

// HealthResult is one probe.
type HealthResult struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exitCode"`
	Output   string    `json:"output"`
}

// dockerd's defaults and limits.
const (
	defaultProbeInterval = 30 * time.Second
	defaultProbeTimeout  = 30 * time.Second
	defaultStartInterval = 5 * time.Second
	defaultProbeRetries  = 3
	maxHealthLog         = 5
	maxProbeOutput       = 4096
	// minHealthDuration is the Engine API's smallest interval or timeout.
	minHealthDuration = time.Millisecond
)

// ValidateHealthcheck refuses what dockerd refuses (with its words), and
// test kinds it would never run.
func ValidateHealthcheck(h *HealthConfig) error {
	if h == nil {
		return nil
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", h.Interval}, {"Timeout", h.Timeout}, {"StartPeriod", h.StartPeriod}, {"StartInterval", h.StartInterval}} {
		if d.v != 0 && d.v < minHealthDuration {
			return fmt.Errorf("%w: %s in Healthcheck cannot be less than %s", ErrInvalidArgument, d.name, minHealthDuration)
		}
	}
	if h.Retries < 0 {
		return fmt.Errorf("%w: Retries in Healthcheck cannot be negative", ErrInvalidArgument)
	}
	if len(h.Test) == 0 {
		return nil
	}
	switch h.Test[0] {
	case "NONE":
	case "CMD":
		if len(h.Test) < 2 {
			return fmt.Errorf("%w: healthcheck CMD needs a command", ErrInvalidArgument)
		}
	case "CMD-SHELL":
		if len(h.Test) != 2 || h.Test[1] == "" {
			return fmt.Errorf("%w: healthcheck CMD-SHELL needs one command string", ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("%w: unknown healthcheck type %q: use NONE, CMD or CMD-SHELL", ErrInvalidArgument, h.Test[0])
	}
	return nil
}

// mergeHealthcheck is the healthcheck a container runs: the one given at
// create, its empty test and zero fields taken from the image's (Docker's
// merge); nil when neither has one or it is NONE (--no-healthcheck).
func mergeHealthcheck(given, image *HealthConfig) *HealthConfig {
	var out HealthConfig
	switch {
	case given == nil && image == nil:
		return nil
	case given == nil:
		out = *image
	default:
		out = *given
		if image != nil {
			if len(out.Test) == 0 {
				out.Test = image.Test
			}
			if out.Interval == 0 {
				out.Interval = image.Interval
			}
			if out.Timeout == 0 {
				out.Timeout = image.Timeout
			}
			if out.StartPeriod == 0 {
				out.StartPeriod = image.StartPeriod
			}
			if out.StartInterval == 0 {
				out.StartInterval = image.StartInterval
			}
			if out.Retries == 0 {
				out.Retries = image.Retries
			}
		}
	}
	if len(out.Test) == 0 || out.Test[0] == "NONE" {
		return nil
	}
	out.Test = append([]string(nil), out.Test...)
	return &out
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// applyProbe is the health after one more probe result: a new value, h is
// not changed (records are shared by copy with readers).
func applyProbe(h Health, res HealthResult, hc HealthConfig, startedAt time.Time) Health {
	log := append([]HealthResult(nil), h.Log...)
	log = append(log, res)
	if len(log) > maxHealthLog {
		log = log[len(log)-maxHealthLog:]
	}
	h.Log = log
	if res.ExitCode == 0 {
		h.FailingStreak, h.Status = 0, HealthHealthy
		return h
	}
	if h.Status == HealthStarting && res.Start.Sub(startedAt) < hc.StartPeriod {
		return h // still within the start period: not counted
	}
	retries := hc.Retries
	if retries <= 0 {
		retries = defaultProbeRetries
	}
	h.FailingStreak++
	if h.FailingStreak >= retries {
		h.Status = HealthUnhealthy
	}
	return h
}

// probeInterval is the wait before the next probe.
func probeInterval(hc HealthConfig, sinceStart time.Duration, status string) time.Duration {
	if sinceStart < hc.StartPeriod && status == HealthStarting {
		return orDefault(hc.StartInterval, defaultStartInterval)
	}
	return orDefault(hc.Interval, defaultProbeInterval)
}

// watchHealth runs the probes of the container id for its run that started
// at startedAt, until it exits or the engine stops.
func (e *Engine) watchHealth(id string, startedAt time.Time, hc HealthConfig) {
	ctx, cancel := context.WithCancel(e.ctx)
	e.mu.Lock()
	r, ok := e.records[id]
	if !ok {
		e.mu.Unlock()
		cancel()
		return
	}
	if r.healthCancel != nil {
		r.healthCancel()
	}
	done := make(chan struct{})
	r.healthCancel, r.healthDone = cancel, done
	e.mu.Unlock()
	go func() {
		defer close(done)
		defer cancel()
		for {
			c, err := e.Get(id)
			if err != nil || c.State.Health == nil || !c.State.StartedAt.Equal(startedAt) {
				return
			}
			t := time.NewTimer(probeInterval(hc, time.Since(startedAt), c.State.Health.Status))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			res := e.probe(ctx, c, hc)
			if ctx.Err() != nil {
				return
			}
			var before, after string
			_, err = e.updateState(id, func(c *Container) {
				if !c.State.Running || !c.State.StartedAt.Equal(startedAt) || c.State.Health == nil {
					return
				}
				before = c.State.Health.Status
				h := applyProbe(*c.State.Health, res, hc, startedAt)
				after = h.Status
				c.State.Health = &h
			})
			if err != nil {
				return
			}
			if before != after {
				e.emitID("health_status: "+after, id, nil)
			}
		}
	}()
}

// stopHealth ends the probes of the container id and waits until the one
// under way (if any) is gone with its supervisor and files: nothing of a
// stopped container may be left running. Call without locks held.
func (e *Engine) stopHealth(id string) {
	e.mu.Lock()
	var cancel context.CancelFunc
	var done chan struct{}
	if r, ok := e.records[id]; ok {
		cancel, done = r.healthCancel, r.healthDone
		r.healthCancel, r.healthDone = nil, nil
	}
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// probeCommand is the process of a healthcheck test.
func probeCommand(test []string) []string {
	if test[0] == "CMD-SHELL" {
		return []string{"/bin/sh", "-c", test[1]}
	}
	return test[1:]
}

// probe runs one healthcheck in the container c, as an exec under its own
// supervisor, and returns its result; its files go when it is done.
func (e *Engine) probe(ctx context.Context, c Container, hc HealthConfig) HealthResult {
	res := HealthResult{Start: time.Now().UTC()}
	fail := func(msg string) HealthResult {
		res.End, res.ExitCode, res.Output = time.Now().UTC(), -1, msg
		return res
	}
	p, err := e.execProcess(c, ExecConfig{Cmd: probeCommand(hc.Test)})
	if err != nil {
		return fail(err.Error())
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err.Error())
	}
	defer outR.Close()
	execID := newID()
	defer os.RemoveAll(e.execDir(c.ID, execID))
	sup, pid, err := e.startExecShim(c.ID, execID, p, nil, outW, outW)
	outW.Close()
	if err != nil {
		var ee *ExecError
		if errors.As(err, &ee) {
			res.End, res.ExitCode, res.Output = time.Now().UTC(), ee.Code, ee.Msg
			return res
		}
		return fail(err.Error())
	}
	// A pidfd, taken now, kills the very process on a timeout, never one
	// that reused its pid.
	pidfd, pidErr := unix.PidfdOpen(pid, 0)
	if pidErr == nil {
		defer unix.Close(pidfd)
	}
	output := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(outR, maxProbeOutput))
		_, _ = io.Copy(io.Discard, outR) // the rest, so the probe never blocks on a full pipe
		output <- string(b)
	}()
	exited := make(chan struct{})
	go func() {
		runtime.AwaitExit(sup.Pid)
		_, _ = sup.Wait()
		close(exited)
	}()
	timeout := orDefault(hc.Timeout, defaultProbeTimeout)
	t := time.NewTimer(timeout)
	defer t.Stop()
	timedOut := false
	select {
	case <-exited:
	case <-t.C:
		timedOut = true
	case <-ctx.Done():
	}
	if timedOut || ctx.Err() != nil {
		if pidErr == nil {
			_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		}
		<-exited
	}
	// The probe's children may hold its output open: do not wait for them.
	select {
	case res.Output = <-output:
	case <-time.After(time.Second):
		outR.Close()
		res.Output = <-output
	}
	if timedOut {
		return fail(fmt.Sprintf("Health check exceeded timeout (%v)", timeout))
	}
	code, ok := readExecExit(e.execDir(c.ID, execID))
	if !ok {
		return fail("health probe's supervisor ended without an exit code")
	}
	res.End, res.ExitCode = time.Now().UTC(), code
	return res
}

// resumeHealth takes over the healthcheck of a running container that a
// previous daemon started; its status and streak go on where they were.
func (e *Engine) resumeHealth(id string) {
	c, err := e.update(id, func(c *Container) {
		if c.Config.Healthcheck != nil && c.State.Health == nil {
			c.State.Health = &Health{Status: HealthStarting}
		}
	})
	if err == nil && c.State.Running && c.Config.Healthcheck != nil {
		e.watchHealth(id, c.State.StartedAt, *c.Config.Healthcheck)
	}
}

// WaitHealth returns the container once its health status is no longer
// health ("" for none) or it no longer runs; it never polls.
func (e *Engine) WaitHealth(ctx context.Context, idOrName, health string) (Container, error) {
	e.mu.Lock()
	r, err := e.lookupLocked(idOrName)
	e.mu.Unlock()
	if err != nil {
		return Container{}, err
	}
	for {
		e.mu.Lock()
		c, removed, ch := r.c, r.removed, r.changed
		e.mu.Unlock()
		if removed {
			return c, fmt.Errorf("%w: %s", ErrNotFound, idOrName)
		}
		cur := ""
		if c.State.Health != nil {
			cur = c.State.Health.Status
		}
		if !c.State.Running || cur != health {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return c, ctx.Err()
		}
	}
}
