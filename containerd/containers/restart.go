package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Restart policies, as Docker's: the engine starts an exited container
// again after a back-off, as dockerd's restart manager does
// (moby/restartmanager):
//
//   - the delay starts at 100 ms and doubles at each restart, up to 1 min;
//     a run that lasted 10 s or more starts the doubling again from 100 ms;
//   - no restarts a container never; always whatever its exit code;
//     on-failure[:N] when it exited non-zero (at most N times in a row,
//     RestartCount counting them); unless-stopped as always;
//   - a container stopped or killed by the user (stop, kill with SIGKILL or
//     its stop signal) is not restarted, whatever its policy;
//   - when the daemon starts, the exited containers it finds come back if
//     their policy is always (even those the user stopped, as Docker's),
//     unless-stopped or on-failure and the user did not stop them. These
//     starts reset RestartCount, as dockerd's do.
//
// Docker restarts an on-failure container the user stopped (its exit code
// was non-zero) when the daemon starts; shoal does not: a stop is a stop.
// The back-off is held in memory, as dockerd's is: a daemon restart resets
// it. While a restart waits its delay the container is "restarting"
// (State.Restarting); stop and remove cancel the wait.

// Restart policy names.
const (
	RestartNo            = "no"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
	RestartOnFailure     = "on-failure"
)

// RestartPolicy is Docker's HostConfig.RestartPolicy.
type RestartPolicy struct {
	Name string `json:"name,omitempty"`
	// MaximumRetryCount bounds on-failure's restarts; 0 is no bound.
	MaximumRetryCount int `json:"maximumRetryCount,omitempty"`
}

// Validate refuses an unknown policy and a retry count that is negative or
// given to a policy other than on-failure (dockerd's rules and words).
func (p RestartPolicy) Validate() error {
	switch p.Name {
	case "", RestartNo, RestartAlways, RestartUnlessStopped:
		if p.MaximumRetryCount != 0 {
			msg := "invalid restart policy: maximum retry count can only be used with 'on-failure'"
			if p.MaximumRetryCount < 0 {
				msg += " and cannot be negative"
			}
			return fmt.Errorf("%w: %s", ErrInvalidArgument, msg)
		}
	case RestartOnFailure:
		if p.MaximumRetryCount < 0 {
			return fmt.Errorf("%w: invalid restart policy: maximum retry count cannot be negative", ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("%w: invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", ErrInvalidArgument, p.Name)
	}
	return nil
}

// Enabled reports whether the policy ever restarts.
func (p RestartPolicy) Enabled() bool { return p.Name != "" && p.Name != RestartNo }

// The back-off of dockerd's restart manager.
const (
	restartDelayMin   = 100 * time.Millisecond
	restartDelayMax   = time.Minute
	restartResetAfter = 10 * time.Second
)

// nextRestartDelay is the wait before the next restart, after a run that
// lasted ran, when the previous wait was prev (0: none yet).
func nextRestartDelay(prev, ran time.Duration) time.Duration {
	if ran >= restartResetAfter {
		prev = 0
	}
	switch {
	case prev == 0:
		return restartDelayMin
	case prev < restartDelayMax:
		prev *= 2
	}
	return min(prev, restartDelayMax)
}

// shouldRestart decides whether a container that is not running is started
// again: at its exit (daemonStart false) or when the daemon starts.
func shouldRestart(p RestartPolicy, exitCode int, stoppedByUser bool, restartCount int, daemonStart bool) bool {
	switch p.Name {
	case RestartAlways:
		return daemonStart || !stoppedByUser
	case RestartUnlessStopped:
		return !stoppedByUser
	case RestartOnFailure:
		return !stoppedByUser && exitCode != 0 && (p.MaximumRetryCount == 0 || restartCount < p.MaximumRetryCount)
	}
	return false
}

// restartKey marks the context of a start by the restart policy, with the
// cancel channel of the restart it carries out: such a start counts in
// RestartCount (a user's start resets it), and does nothing if that restart
// was cancelled meanwhile.
type restartKey struct{}

// armRestartLocked registers a pending restart of r after its back-off, in
// the same critical section that marks it restarting (so a stop always
// finds it). ran is how long its last run lasted. Call with e.mu held.
func (e *Engine) armRestartLocked(r *record, ran time.Duration) (time.Duration, chan struct{}) {
	r.restartDelay = nextRestartDelay(r.restartDelay, ran)
	e.cancelRestartLocked(r)
	r.restartCancel = make(chan struct{})
	return r.restartDelay, r.restartCancel
}

// runRestart starts the container id again after delay, once the engine's
// restarts are enabled (EnableRestarts), unless cancel is closed first.
func (e *Engine) runRestart(id string, delay time.Duration, cancel chan struct{}) {
	slog.Info("restart policy: container exited, restarting after back-off", "container", id, "delay", delay)
	go func() {
		if !await(e.restartsOn, cancel, e.ctx.Done()) {
			return
		}
		t := time.NewTimer(delay)
		defer t.Stop()
		if !await(t.C, cancel, e.ctx.Done()) {
			return
		}
		e.restart(context.WithValue(e.ctx, restartKey{}, cancel), id)
	}()
}

// takeRestartLocked is Start's side of a pending restart: a policy's start
// (ctx from runRestart) goes on only if its restart is still the pending
// one, and takes it; a user's start cancels any and resets the back-off.
// Call with e.mu held.
func (e *Engine) takeRestartLocked(ctx context.Context, r *record) (policy, ok bool) {
	cancel, policy := ctx.Value(restartKey{}).(chan struct{})
	if !policy {
		e.cancelRestartLocked(r)
		r.restartDelay = 0
		return false, true
	}
	if r.restartCancel != cancel {
		return true, false // stopped, removed or started by the user meanwhile
	}
	r.restartCancel = nil
	return true, true
}

// await waits for ch and reports true, or false if cancel or done comes first.
func await[T any](ch <-chan T, cancel, done <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-cancel:
	case <-done:
	}
	return false
}

// cancelRestartLocked cancels the pending restart of r, if any. Call with
// e.mu held.
func (e *Engine) cancelRestartLocked(r *record) bool {
	if r.restartCancel == nil {
		return false
	}
	close(r.restartCancel)
	r.restartCancel = nil
	return true
}

// cancelRestart cancels a pending restart of the container id and records
// it as exited, stopped by the user; it reports whether one was pending.
func (e *Engine) cancelRestart(id string) bool {
	e.mu.Lock()
	r, ok := e.records[id]
	pending := ok && e.cancelRestartLocked(r)
	e.mu.Unlock()
	if !pending {
		return false
	}
	_, _ = e.update(id, func(c *Container) {
		if c.State.Restarting {
			c.State.Restarting, c.State.Status, c.State.StoppedByUser = false, "exited", true
		}
	})
	return true
}

// restart starts the container through Options.Restart (the daemon's start,
// which also sets up its network); a failure ends the restarts, as in
// Docker, and is recorded on the container.
func (e *Engine) restart(ctx context.Context, id string) {
	start := e.opts.Restart
	if start == nil {
		start = e.Start
	}
	err := start(ctx, id)
	if err == nil || errors.Is(err, ErrNotModified) || errors.Is(err, ErrNotFound) || e.ctx.Err() != nil {
		return
	}
	slog.Warn("restart policy: start failed", "container", id, "err", err)
	_, _ = e.update(id, func(c *Container) {
		if !c.State.Running {
			c.State.Restarting, c.State.Status, c.State.Error = false, "exited", err.Error()
		}
	})
}

// EnableRestarts lets the restart policies act (the daemon calls it once it
// can start containers, its network included) and starts again, at once,
// the exited containers whose policy wants them back when the daemon starts.
func (e *Engine) EnableRestarts() {
	e.restartOnce.Do(func() { close(e.restartsOn) })
	e.mu.Lock()
	var ids []string
	for id, r := range e.records {
		st := r.c.State
		if r.removed || st.Running || r.restartCancel != nil || st.StartedAt.IsZero() {
			continue
		}
		if shouldRestart(r.c.Config.RestartPolicy, st.ExitCode, st.StoppedByUser, r.c.RestartCount, true) {
			ids = append(ids, id)
		}
	}
	e.mu.Unlock()
	for _, id := range ids {
		go e.restart(e.ctx, id)
	}
}
