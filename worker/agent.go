package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Dispatcher is the part of the managers' Dispatcher service the agent
// uses; api.NewDispatcherClient(conn) satisfies it.
type Dispatcher interface {
	api.DispatcherClient
}

// Conn is one connection to a manager.
type Conn interface {
	Dispatcher
	Close() error
}

// DialFunc connects to the manager at addr (host:port), with the node's
// mTLS credentials.
type DialFunc func(ctx context.Context, addr string) (Conn, error)

// Config configures an Agent.
type Config struct {
	// Managers are the addresses to try first (from `swarm join` or the
	// node's state); the list the dispatcher sends replaces them.
	Managers []string
	Dial     DialFunc
	Runtime  Runtime
	// Network joins tasks to their overlay networks; nil on a node
	// without overlay networking (a task with networks then fails).
	Network Network
	// Description is sent when a session opens.
	Description *api.NodeDescription
	// RetryDelay is the wait before trying the next manager after a failed
	// session (default 500 ms).
	RetryDelay time.Duration
	Logger     *slog.Logger
	// OnSession, if set, is called with every session message: the node as
	// the managers see it (its role, so the daemon can follow a promotion
	// or demotion) and the manager list.
	OnSession func(*api.SessionMessage)
	// MaxConcurrentStarts is the ceiling of the start window, the
	// container creates and starts in flight (DefaultMaxConcurrentStarts
	// when zero); the window itself adapts below it (admission.go).
	MaxConcurrentStarts int
	// Secrets receives the secrets and configs sent with the tasks (the
	// runtime's EngineRuntime.Secrets); nil drops them.
	Secrets *Secrets
}

// Agent runs a node's tasks for the managers.
type Agent struct {
	cfg      Config
	reporter *Reporter
	// admit is the node's start window, shared by the task goroutines.
	admit *admission

	mu       sync.Mutex // guards the fields below
	managers []string
	next     int // index in managers of the next address to try
	client   Dispatcher
	session  string
	runners  map[string]*taskRunner
	// complete holds the tasks of a COMPLETE set that arrives in parts
	// (the dispatcher splits big sets: the first part is COMPLETE, the
	// rest INCREMENTAL); nil when no set is being assembled.
	complete map[string]bool
	wg       sync.WaitGroup // task goroutines
	ctx      context.Context
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Dial == nil || cfg.Runtime == nil || len(cfg.Managers) == 0 {
		return nil, fmt.Errorf("%w: worker agent needs Dial, Runtime and at least one manager address", ErrInvalidArgument)
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, admit: newAdmission(cfg.MaxConcurrentStarts),
		managers: append([]string(nil), cfg.Managers...), runners: map[string]*taskRunner{}}
	a.reporter = NewReporter(a.sendStatus)
	a.reporter.Logger = cfg.Logger
	return a, nil
}

// Reporter returns the agent's status reporter (its delays may be tuned
// before Run).
func (a *Agent) Reporter() *Reporter { return a.reporter }

// Managers returns the manager addresses the agent currently knows.
func (a *Agent) Managers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.managers...)
}

// StartWindow returns the start window's size, the starts in flight and
// the tasks queued for a slot (held in ACCEPTED).
func (a *Agent) StartWindow() (window, inflight, queued int) { return a.admit.state() }

// Tasks returns the IDs of the tasks the agent runs a goroutine for.
func (a *Agent) Tasks() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id := range a.runners {
		out = append(out, id)
	}
	return out
}

// Run keeps a session to a manager and runs the assigned tasks until ctx
// ends; it returns after every goroutine it started has stopped. Task
// containers keep running.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.reporter.Run(ctx) }()
	for ctx.Err() == nil {
		addr := a.nextManager()
		err := a.runSession(ctx, addr)
		if ctx.Err() != nil {
			break
		}
		a.cfg.Logger.Warn("worker: session ended, trying the next manager", "manager", addr, "err", err)
		sleep(ctx, a.cfg.RetryDelay)
	}
	wg.Wait()
	a.wg.Wait()
	return nil
}

// nextManager returns the next address to try, round robin.
func (a *Agent) nextManager() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr := a.managers[a.next%len(a.managers)]
	a.next = (a.next + 1) % len(a.managers)
	return addr
}

// setManagers takes the dispatcher's manager list; the one in use stays
// next-but-one so a failover goes elsewhere first.
func (a *Agent) setManagers(peers []*api.WeightedPeer, current string) {
	var addrs []string
	for _, p := range peers {
		if p.GetAddr() != "" {
			addrs = append(addrs, p.GetAddr())
		}
	}
	if len(addrs) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.managers = addrs
	a.next = 0
	for i, m := range addrs {
		if m == current {
			a.next = (i + 1) % len(addrs)
		}
	}
}

// sendStatus is the reporter's SendFunc: through the current session.
func (a *Agent) sendStatus(ctx context.Context, updates []*api.TaskStatusUpdate) error {
	a.mu.Lock()
	c, sid := a.client, a.session
	a.mu.Unlock()
	if c == nil {
		return fmt.Errorf("send task statuses: %w", api.ErrUnavailable)
	}
	_, err := c.UpdateTaskStatus(ctx, &api.UpdateTaskStatusRequest{SessionId: sid, Updates: updates})
	if err != nil {
		return fmt.Errorf("send task statuses: %w", api.FromGRPC(err))
	}
	return nil
}

// applyAssignments reconciles one Assignments message with the task
// goroutines.
func (a *Agent) applyAssignments(m *api.AssignmentsMessage) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.GetType() == api.AssignmentsMessage_COMPLETE {
		a.complete = map[string]bool{}
	}
	for _, ch := range m.GetChanges() {
		t := ch.GetTask()
		if t.GetId() == "" {
			continue
		}
		if ch.GetAction() == api.AssignmentChange_REMOVE {
			a.removeLocked(t.GetId())
			a.cfg.Secrets.drop(t.GetId())
			if a.complete != nil {
				delete(a.complete, t.GetId())
			}
			continue
		}
		if a.complete != nil {
			a.complete[t.GetId()] = true
		}
		// Before the runner sees the task: its container's files need them.
		a.cfg.Secrets.set(t.GetId(), ch.GetSecrets(), ch.GetConfigs())
		if r, ok := a.runners[t.GetId()]; ok {
			r.update(proto.Clone(t).(*api.Task))
			continue
		}
		a.startLocked(proto.Clone(t).(*api.Task))
	}
	// A part of a split set results in "<version>.<n>"; the set is whole
	// when a message results in a plain version.
	if a.complete != nil && !strings.Contains(m.GetResultsIn(), ".") {
		for id := range a.runners {
			if !a.complete[id] {
				a.removeLocked(id)
				a.cfg.Secrets.drop(id)
			}
		}
		keep := a.complete
		a.complete = nil
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.removeOrphans(keep) }()
	}
}

// startLocked starts t's goroutine.
func (a *Agent) startLocked(t *api.Task) {
	r := newTaskRunner(a.cfg.Runtime, a.cfg.Network, a.admit, a.reporter.Report, a.cfg.Logger)
	a.runners[t.GetId()] = r
	a.wg.Add(1)
	go func() { defer a.wg.Done(); r.run(a.ctx, t) }()
}

// removeLocked tells a task's goroutine that its task left the set.
func (a *Agent) removeLocked(id string) {
	if r, ok := a.runners[id]; ok {
		close(r.removed)
		delete(a.runners, id)
	}
}

// removeOrphans stops and removes the task containers whose task is not in
// the complete set assigned and has no goroutine: left by an earlier run of
// the agent for tasks that ended or moved while it was away.
func (a *Agent) removeOrphans(assigned map[string]bool) {
	ctx := a.ctx
	cs, err := a.cfg.Runtime.List(ctx)
	if err != nil {
		a.cfg.Logger.Warn("worker: list task containers", "err", err)
		return
	}
	for _, c := range cs {
		a.mu.Lock()
		_, running := a.runners[c.TaskID]
		a.mu.Unlock()
		if running || assigned[c.TaskID] {
			continue
		}
		// Its task's spec is gone with the assignment: the container keeps
		// the grace period it was created with.
		if err := a.cfg.Runtime.Stop(ctx, c.ID, -1); err != nil {
			a.cfg.Logger.Warn("worker: stop orphaned container", "container", c.ID, "err", err)
		}
		if err := a.cfg.Runtime.Remove(ctx, c.ID); err != nil {
			a.cfg.Logger.Warn("worker: remove orphaned container", "container", c.ID, "err", err)
		}
		// Its networks, if it had any (only the ID is known now).
		if a.cfg.Network != nil {
			if err := a.cfg.Network.Detach(ctx, &api.Task{Id: c.TaskID}); err != nil {
				a.cfg.Logger.Warn("worker: detach orphaned task from its networks", "task", c.TaskID, "err", err)
			}
		}
	}
}
