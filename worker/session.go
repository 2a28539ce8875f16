package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
)

// DefaultHeartbeatPeriod is used until the dispatcher names its period.
const DefaultHeartbeatPeriod = time.Second

// sessionOpenTimeout bounds the wait for a session's first message.
const sessionOpenTimeout = 10 * time.Second

// heartbeatPeriods bounds one heartbeat, in periods: the dispatcher gives a
// node whose heartbeats arrive late up to that many periods
// (dispatcher.MaxGracePeriods) before it declares it down, so an answer that
// takes longer comes from a manager that has given up on this node anyway,
// and another manager is tried. Until then a slow manager (a loaded machine)
// is waited for: leaving it means a new session and a full resend of the
// node's assignments.
const heartbeatPeriods = 10

// heartbeatJitter spreads the nodes' heartbeats over the period, so that a
// cluster that started together does not beat in step.
const heartbeatJitter = 0.1

// errSessionEnded: a stream of the session ended without an error.
var errSessionEnded = errors.New("session stream ended")

// runSession opens a session at addr and serves it (heartbeats, manager
// list, assignments) until one of them fails or ctx ends.
//
// It uses two connections to the manager. The first carries the session
// stream, the heartbeats and the status reports: small messages that say the
// node is alive. The second carries the assignments and the log streams: a
// complete set of a thousand tasks is megabytes, and log lines are many.
// Each gRPC connection is one TCP stream with one reader and one writer
// goroutine per side, so on one connection a heartbeat would queue behind
// whatever bulk data was sent before it (and on a starved machine, behind
// the time to decrypt it).
func (a *Agent) runSession(ctx context.Context, addr string) error {
	conn, err := a.cfg.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("dial manager %s: %w", addr, err)
	}
	defer conn.Close()
	work, err := a.cfg.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("dial manager %s for assignments: %w", addr, err)
	}
	defer work.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	a.mu.Lock()
	prev := a.session
	a.mu.Unlock()
	stream, err := conn.Session(sctx, &api.SessionRequest{Description: a.cfg.Description, SessionId: prev})
	if err != nil {
		return fmt.Errorf("open session at %s: %w", addr, api.FromGRPC(err))
	}
	// A manager that accepts the connection but never answers (cut off,
	// overloaded) must not hold the agent: it tries the next one.
	opened := time.AfterFunc(sessionOpenTimeout, cancel)
	first, err := stream.Recv()
	opened.Stop()
	if err != nil {
		return fmt.Errorf("open session at %s: %w", addr, api.FromGRPC(err))
	}
	a.setManagers(first.GetManagers(), addr)
	a.notify(first)
	a.mu.Lock()
	a.client, a.session = conn, first.GetSessionId()
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.client == conn {
			a.client = nil
		}
		a.mu.Unlock()
	}()
	a.cfg.Logger.Info("worker: session open", "manager", addr, "session", first.GetSessionId())
	sid := first.GetSessionId()

	// Log subscriptions ride on the work connection, if it has the
	// LogBroker service; their failures do not end the session.
	var logsDone sync.WaitGroup
	defer logsDone.Wait()
	if lb, ok := work.(api.LogBrokerClient); ok {
		logsDone.Add(1)
		go func() { defer logsDone.Done(); a.serveLogs(sctx, lb) }()
	}
	fast, err := newFastBeater(first)
	if err != nil {
		a.cfg.Logger.Warn("worker: heartbeats over gRPC only", "manager", addr, "err", err)
	}
	if fast != nil {
		defer fast.Close()
		stop := context.AfterFunc(sctx, func() { fast.Close() })
		defer stop()
	}
	errc := make(chan error, 3)
	go func() { errc <- a.heartbeats(sctx, conn, sid, fast) }()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- sessionErr("session", err)
				return
			}
			a.setManagers(m.GetManagers(), addr)
			a.notify(m)
		}
	}()
	go func() { errc <- a.assignments(sctx, work, sid) }()
	// The first failure ends the session; the others follow from cancel.
	err = <-errc
	cancel()
	<-errc
	<-errc
	return err
}

func (a *Agent) notify(m *api.SessionMessage) {
	if a.cfg.OnSession != nil {
		a.cfg.OnSession(m)
	}
}

func sessionErr(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: %w", what, errSessionEnded)
	}
	return fmt.Errorf("%s: %w", what, api.FromGRPC(err))
}

// lateBeat is how late, in periods, a heartbeat may be (its answer's wait
// plus its timer's delay) before the agent takes it as a sign of overload
// and cuts its start window: a late heartbeat is the first step towards
// being declared down.
const lateBeat = 0.5

// heartbeats beats at the period the dispatcher names, through the fast
// path (fast, nil if none) while it answers, else over gRPC.
func (a *Agent) heartbeats(ctx context.Context, c Dispatcher, sid string, fast *fastBeater) error {
	period := DefaultHeartbeatPeriod
	var due time.Time // when this beat should have been sent
	for {
		sent := time.Now()
		p, err := heartbeat(ctx, c, sid, fast, period)
		if err != nil {
			return err
		}
		if fast != nil && !fast.usable() && ctx.Err() == nil {
			a.cfg.Logger.Warn("worker: heartbeat fast path does not answer; beating over gRPC", "session", sid)
			fast = nil
		}
		late := time.Since(sent)
		if !due.IsZero() {
			late += sent.Sub(due)
		}
		if late > time.Duration(lateBeat*float64(period)) {
			a.admit.congested()
			a.cfg.Logger.Debug("worker: heartbeat late, start window cut", "late", late)
		}
		period = p
		wait := time.Duration(float64(period) * (1 - heartbeatJitter*rand.Float64()))
		due = time.Now().Add(wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// assignments receives the node's assignments and applies them. A message
// that does not follow the previous one (applies_to) ends the session, so
// the next one starts with a COMPLETE set.
func (a *Agent) assignments(ctx context.Context, c Dispatcher, sid string) error {
	stream, err := c.Assignments(ctx, &api.AssignmentsRequest{SessionId: sid})
	if err != nil {
		return sessionErr("assignments", err)
	}
	last := ""
	for {
		m, err := stream.Recv()
		if err != nil {
			return sessionErr("assignments", err)
		}
		if m.GetType() == api.AssignmentsMessage_INCREMENTAL && m.GetAppliesTo() != last {
			return fmt.Errorf("assignments: message applies to %q, last was %q", m.GetAppliesTo(), last)
		}
		last = m.GetResultsIn()
		a.applyAssignments(m)
	}
}
