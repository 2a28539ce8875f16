package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
)

// Convergence progress of create, scale and update, drawn as docker draws
// it: an "overall progress" line, one bar per replica slot (or per node of
// a global service) while there are at most 20, then a "verify" line.
//
// The decision part is pure: progressTracker.step takes one poll's
// service, tasks and nodes and returns the lines to show plus a verdict.
// waitOnService is the thin loop around it (poll, render, time out).

// taskStateOrder numbers task states as docker's progress does: a bar
// fills up to running (9); the terminal states sort after it.
var taskStateOrder = map[swarm.TaskState]int{
	swarm.TaskStateNew:       1,
	swarm.TaskStateAllocated: 2,
	swarm.TaskStatePending:   3,
	swarm.TaskStateAssigned:  4,
	swarm.TaskStateAccepted:  5,
	swarm.TaskStatePreparing: 6,
	swarm.TaskStateReady:     7,
	swarm.TaskStateStarting:  8,
	swarm.TaskStateRunning:   9,
	swarm.TaskStateComplete:  10,
	swarm.TaskStateShutdown:  11,
	swarm.TaskStateFailed:    12,
	swarm.TaskStateRejected:  13,
}

const (
	progressMax     = 9  // taskStateOrder of running: a full bar
	maxProgressBars = 20 // more replicas than this: only the overall line
	longestState    = 9  // len("preparing"), the widest non-terminal state
	// failuresToGiveUp is how many failed or rejected tasks of one slot
	// (or node) make the CLI stop waiting: the restart loop will not
	// converge by itself.
	failuresToGiveUp = 3
)

func terminalState(s swarm.TaskState) bool {
	return taskStateOrder[s] > taskStateOrder[swarm.TaskStateRunning]
}

// progressLine is one line of the progress display, keyed by its ID
// ("overall progress", "1/3", a node ID, "verify").
type progressLine struct {
	ID   string
	Text string
}

func (l progressLine) String() string {
	return strings.TrimRight(l.ID+": "+l.Text, " ")
}

// progressReport is what one poll tells.
type progressReport struct {
	Lines            []progressLine
	Running, Desired int
	Converged        bool
	// Failed, when not empty, says why waiting is pointless (tasks fail
	// over and over).
	Failed string
	// Stuck explains why the service is not converged yet (a task's
	// scheduler message), shown when the wait times out.
	Stuck string
	// Score grows whenever a task moves forward; an unchanged score
	// across polls means no progress.
	Score int
}

// progressTracker remembers across polls which bar a slot owns, so bars
// keep their place as tasks come and go.
type progressTracker struct {
	slotMap map[int]int
	// rollback is set while the service is rolled back: the overall line
	// says so, as docker's ("rolling back update: 1 out of 2 tasks").
	rollback bool
	// since, when set, is when the rollback started: a rollback brings
	// back the template of the service's older tasks, whose failures
	// before it are history, not a sign that the rollback fails.
	since time.Time
}

// step computes the progress display for one poll. nodes are used only to
// ignore tasks on nodes that are down, as docker does.
func (p *progressTracker) step(svc swarm.Service, tasks []swarm.Task, nodes []swarm.Node) progressReport {
	down := map[string]bool{}
	for _, n := range nodes {
		if n.Status.State == swarm.NodeStateDown {
			down[n.ID] = true
		}
	}
	failures := map[string]int{}
	lastFailure := map[string]string{}
	var live []swarm.Task
	for _, t := range tasks {
		if t.ServiceID != "" && svc.ID != "" && t.ServiceID != svc.ID {
			continue
		}
		key := taskKey(svc, t)
		failed := t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected
		if failed && !t.Status.Timestamp.Before(p.since) {
			failures[key]++
			if msg := taskProblem(t); msg != "" {
				lastFailure[key] = msg
			}
		}
		if taskStateOrder[t.DesiredState] == 0 || taskStateOrder[t.Status.State] == 0 {
			continue
		}
		if t.NodeID != "" && down[t.NodeID] {
			continue
		}
		live = append(live, t)
	}
	chosen := pickTasks(svc, live)

	var r progressReport
	global := svc.Spec.Mode.Global != nil
	switch {
	case svc.Spec.Mode.Replicated != nil:
		r.Desired = 1
		if svc.Spec.Mode.Replicated.Replicas != nil {
			r.Desired = int(*svc.Spec.Mode.Replicated.Replicas)
		}
	case global:
		r.Desired = len(chosen)
	default:
		r.Failed = "progress is only shown for replicated and global services"
		return r
	}

	keys := make([]string, 0, len(chosen))
	for k := range chosen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return lessKey(keys[i], keys[j]) })
	if p.slotMap == nil {
		p.slotMap = map[int]int{}
	}

	if global && r.Desired == 0 {
		r.Lines = append(r.Lines, progressLine{"overall progress", "waiting for new tasks"})
		r.Stuck = "no task was created for the service (no node satisfies its constraints?)"
		return r
	}
	overall := len(r.Lines)
	r.Lines = append(r.Lines, progressLine{"overall progress", ""})
	bars := r.Desired <= maxProgressBars
	slotLines := make([]progressLine, 0)
	if bars && !global {
		for i := 1; i <= r.Desired; i++ {
			slotLines = append(slotLines, progressLine{fmt.Sprintf("%d/%d", i, r.Desired), ""})
		}
	}
	for _, k := range keys {
		t := chosen[k]
		if !terminalState(t.DesiredState) && t.Status.State == swarm.TaskStateRunning {
			r.Running++
		}
		r.Score += taskStateOrder[t.Status.State]
		if msg := taskProblem(t); msg != "" && r.Stuck == "" && t.Status.State != swarm.TaskStateRunning {
			r.Stuck = fmt.Sprintf("%s: %s", barID(svc, t, p, r.Desired), msg)
		}
		if !bars {
			continue
		}
		id := barID(svc, t, p, r.Desired)
		text, ok := taskBarText(t)
		if !ok {
			continue
		}
		if global {
			slotLines = append(slotLines, progressLine{id, text})
			continue
		}
		if idx := p.slotMap[t.Slot]; idx >= 1 && idx <= len(slotLines) {
			slotLines[idx-1].Text = text
		}
	}
	r.Lines = append(r.Lines, slotLines...)
	r.Lines[overall].Text = fmt.Sprintf("%d out of %d tasks", r.Running, r.Desired)
	if p.rollback {
		r.Lines[overall].Text = "rolling back update: " + r.Lines[overall].Text
	}
	r.Converged = r.Running == r.Desired
	if r.Converged {
		return r
	}
	for _, k := range keys {
		if failures[k] >= failuresToGiveUp {
			t := chosen[k]
			msg := lastFailure[k]
			if msg == "" {
				msg = "task failed"
			}
			r.Failed = fmt.Sprintf("%s: %d tasks failed, the last with: %s", barID(svc, t, p, r.Desired), failures[k], msg)
			return r
		}
	}
	// A slot whose tasks all failed and were not replaced (restart
	// condition none) will never converge either.
	for k, n := range failures {
		if _, alive := chosen[k]; !alive && n >= failuresToGiveUp {
			r.Failed = fmt.Sprintf("%d tasks failed, the last with: %s", n, lastFailure[k])
			return r
		}
	}
	return r
}

// taskKey groups the tasks that compete for one bar: the slot of a
// replicated service, the node of a global one.
func taskKey(svc swarm.Service, t swarm.Task) string {
	if svc.Spec.Mode.Global != nil {
		return "n:" + t.NodeID
	}
	return fmt.Sprintf("s:%09d", t.Slot)
}

func lessKey(a, b string) bool { return a < b }

// pickTasks keeps one task per slot (node): the one with the lowest
// desired state, then the lowest observed state, as docker does; that is
// the task that decides whether the slot is done.
func pickTasks(svc swarm.Service, tasks []swarm.Task) map[string]swarm.Task {
	out := map[string]swarm.Task{}
	for _, t := range tasks {
		k := taskKey(svc, t)
		if cur, ok := out[k]; ok {
			cd, td := taskStateOrder[cur.DesiredState], taskStateOrder[t.DesiredState]
			if cd < td {
				continue
			}
			if cd == td && taskStateOrder[cur.Status.State] <= taskStateOrder[t.Status.State] {
				continue
			}
		}
		out[k] = t
	}
	return out
}

// barID is the ID of a task's bar: "slot/replicas" with slots mapped onto
// 1..N in order of appearance, or the short node ID of a global task.
func barID(svc swarm.Service, t swarm.Task, p *progressTracker, desired int) string {
	if svc.Spec.Mode.Global != nil {
		return shortID(t.NodeID)
	}
	idx, ok := p.slotMap[t.Slot]
	if !ok {
		idx = len(p.slotMap) + 1
		p.slotMap[t.Slot] = idx
	}
	return fmt.Sprintf("%d/%d", idx, desired)
}

// taskBarText is a bar's text: the task's error if it has one, else its
// state padded and a 50-column bar; terminal tasks leave the bar as is.
func taskBarText(t swarm.Task) (string, bool) {
	if t.Status.Err != "" {
		return truncError(t.Status.Err), true
	}
	if terminalState(t.DesiredState) || terminalState(t.Status.State) {
		return "", false
	}
	return fmt.Sprintf("%-*s %s", longestState, t.Status.State, progressBar(taskStateOrder[t.Status.State], progressMax)), true
}

// taskProblem is what a task says about why it is not running: its error,
// else a pending task's scheduler message.
func taskProblem(t swarm.Task) string {
	if t.Status.Err != "" {
		return oneLine(t.Status.Err)
	}
	if t.Status.State == swarm.TaskStatePending && t.Status.Message != "" && t.Status.Message != "pending task scheduling" {
		return oneLine(t.Status.Message)
	}
	return ""
}

// progressBar draws docker's 50-column bar.
func progressBar(cur, total int) string {
	pct := 0
	if total > 0 {
		pct = int(float64(cur)/float64(total)*100) / 2
	}
	pct = min(max(pct, 0), 50)
	return "[" + strings.Repeat("=", pct) + ">" + strings.Repeat(" ", 50-pct) + "]"
}

// truncError keeps an error on one line of at most 75 columns, as docker's
// progress does, so it never wraps on a narrow terminal.
func truncError(msg string) string {
	msg = strings.ReplaceAll(msg, "\n", " ")
	if r := []rune(msg); len(r) > 75 {
		return string(r[:74]) + "…"
	}
	return msg
}

// progressPrinter draws successive progress displays. On a terminal it
// redraws the block in place; elsewhere it prints each line whose text
// changed, once, without cursor movement.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	order []string          // IDs in order of first appearance
	text  map[string]string // last text per ID
	drawn int               // lines of the block on screen (tty)
}

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{w: w, tty: tty, text: map[string]string{}}
}

// show merges lines into the display and draws what changed.
func (pp *progressPrinter) show(lines []progressLine) {
	var changed []progressLine
	for _, l := range lines {
		old, seen := pp.text[l.ID]
		if !seen {
			pp.order = append(pp.order, l.ID)
		}
		if !seen || old != l.Text {
			changed = append(changed, l)
		}
		pp.text[l.ID] = l.Text
	}
	if len(changed) == 0 {
		return
	}
	if !pp.tty {
		var b strings.Builder
		for _, l := range changed {
			b.WriteString(l.String())
			b.WriteByte('\n')
		}
		io.WriteString(pp.w, b.String())
		return
	}
	var b strings.Builder
	if pp.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", pp.drawn)
	}
	for _, id := range pp.order {
		b.WriteString("\x1b[2K")
		b.WriteString(progressLine{id, pp.text[id]}.String())
		b.WriteByte('\n')
	}
	pp.drawn = len(pp.order)
	io.WriteString(pp.w, b.String())
}

// progressAPI is the part of the client the convergence loop needs.
type progressAPI interface {
	ServiceInspect(ctx context.Context, id string, insertDefaults bool) (swarm.Service, []byte, error)
	TaskList(ctx context.Context, f apiclient.Filters) ([]swarm.Task, error)
	NodeList(ctx context.Context, f apiclient.Filters) ([]swarm.Node, error)
}

// waitOptions tune waitOnService.
type waitOptions struct {
	poll    time.Duration // between polls
	timeout time.Duration // give up after this long without progress
	verify  time.Duration // how long a converged service must stay so
	tty     bool
	quiet   bool
	// name is how "Service NAME converged" names the service, as the user
	// did (docker's update, scale and rollback); empty: its ID (create).
	name string
	// rollback is set when the command asked for the rollback (service
	// rollback, service update --rollback): a rollback that converges is
	// its success. Otherwise a rollback undid the command's change, and
	// the wait ends in an error once the rolled-back service converged.
	rollback bool
	// before is the service's UpdateStatus read before the command's
	// write. A write that changes nothing leaves the status as it was, so
	// a status still equal to it tells of an earlier update (say, a
	// rollback long completed) and is not this command's.
	before *swarm.UpdateStatus
}

// verifyWindow is docker's default UpdateConfig.Monitor: how long tasks
// must stay running before the service counts as converged. A service's
// own UpdateConfig.Monitor replaces it. A variable so tests can shorten it.
var verifyWindow = 5 * time.Second

// waitOnService polls the service until it converges, fails or stops
// progressing, drawing progress on w. It returns an error naming the
// reason when the service cannot converge, when its update paused, or when
// its update was rolled back (unless o.rollback).
func waitOnService(ctx context.Context, api progressAPI, serviceID string, w io.Writer, o waitOptions) error {
	if o.quiet {
		w = io.Discard
	}
	pp := newProgressPrinter(w, o.tty)
	var tr progressTracker
	lastScore, lastRunning := -1, -1
	lastProgress := time.Now()
	var convergedAt time.Time
	// reason is why the service is rolled back (the rollback_started
	// message); completed is the rollback_completed message, shown once
	// the service converged, as docker's.
	var reason, completed string
	// fail ends the wait; a rollback that undid the command's change is
	// the first thing the error says.
	fail := func(err error) error {
		if !tr.rollback || o.rollback {
			return err
		}
		msg := "service rolled back"
		if reason != "" {
			msg += ": " + reason
		}
		if err == nil {
			return errors.New(msg)
		}
		return fmt.Errorf("%s; %w", msg, err)
	}
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	for {
		svc, _, err := api.ServiceInspect(ctx, serviceID, false)
		if err != nil {
			return err
		}
		verify := o.verify
		if svc.Spec.UpdateConfig != nil && svc.Spec.UpdateConfig.Monitor != 0 {
			verify = svc.Spec.UpdateConfig.Monitor
		}
		var head []progressLine // lines above the bars
		// pending: the manager still watches this command's update (its
		// monitor window): converged tasks are not its last word yet.
		pending := false
		if us := svc.UpdateStatus; us != nil && !sameUpdateStatus(us, o.before) {
			pending = us.State == swarm.UpdateStateUpdating || us.State == swarm.UpdateStateRollbackStarted
			if us.State == swarm.UpdateStateRollbackStarted && svc.Spec.RollbackConfig != nil && svc.Spec.RollbackConfig.Monitor != 0 {
				verify = svc.Spec.RollbackConfig.Monitor
			}
			switch us.State {
			case swarm.UpdateStatePaused:
				return fmt.Errorf("service update paused: %s", us.Message)
			case swarm.UpdateStateRollbackPaused:
				return fmt.Errorf("service rollback paused: %s", us.Message)
			case swarm.UpdateStateUpdating:
				tr.rollback, tr.since = false, time.Time{}
			case swarm.UpdateStateRollbackStarted:
				tr.rollback, tr.since = true, startedAt(us)
				reason = us.Message
				if us.Message != "" {
					head = append(head, progressLine{"rollback", us.Message})
				}
			case swarm.UpdateStateRollbackCompleted:
				tr.rollback, tr.since = true, startedAt(us)
				completed = us.Message
				if reason == "" {
					reason = us.Message
				}
			}
		}
		tasks, err := api.TaskList(ctx, apiclient.Filters{}.Add("service", svc.ID).Add("_up-to-date", "true"))
		if err != nil {
			return err
		}
		nodes, err := api.NodeList(ctx, nil)
		if err != nil {
			return err
		}
		r := tr.step(svc, tasks, nodes)
		lines := append(head, r.Lines...)
		if r.Failed != "" {
			pp.show(lines)
			return fail(fmt.Errorf("service %s cannot converge: %s", svc.Spec.Name, r.Failed))
		}
		if r.Score != lastScore || r.Running != lastRunning {
			lastScore, lastRunning = r.Score, r.Running
			lastProgress = time.Now()
		}
		if r.Converged {
			if convergedAt.IsZero() {
				convergedAt = time.Now()
			}
			if left := verify - time.Since(convergedAt); left > 0 || pending {
				left = max(left, 0)
				lines = append(lines, progressLine{"verify", fmt.Sprintf("Waiting %d seconds to verify that tasks are stable...", left/time.Second+1)})
			} else {
				shown := o.name
				if shown == "" {
					shown = serviceID
				}
				lines = append(lines, progressLine{"verify", "Service " + shown + " converged"})
				if completed != "" {
					lines = append(lines, progressLine{"rollback", completed})
				}
				pp.show(lines)
				return fail(nil)
			}
		} else if !convergedAt.IsZero() {
			convergedAt = time.Time{}
			lines = append(lines, progressLine{"verify", "Detected task failure"})
		}
		pp.show(lines)
		if !r.Converged && time.Since(lastProgress) > o.timeout {
			why := r.Stuck
			if why == "" {
				why = fmt.Sprintf("%d out of %d tasks running", r.Running, r.Desired)
			}
			return fail(fmt.Errorf("service %s did not converge: no progress for %s: %s", svc.Spec.Name, o.timeout, why))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func startedAt(us *swarm.UpdateStatus) time.Time {
	if us.StartedAt == nil {
		return time.Time{}
	}
	return *us.StartedAt
}

// sameUpdateStatus reports whether a and b tell of the same moment of the
// same update: state, message and times.
func sameUpdateStatus(a, b *swarm.UpdateStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	sameTime := func(x, y *time.Time) bool {
		if x == nil || y == nil {
			return x == y
		}
		return x.Equal(*y)
	}
	return a.State == b.State && a.Message == b.Message &&
		sameTime(a.StartedAt, b.StartedAt) && sameTime(a.CompletedAt, b.CompletedAt)
}
