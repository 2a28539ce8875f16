package orchestrator

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/durationpb"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt with the output produced now")

// TestTranscripts replays the scripts in testdata/*.txt. Each command that
// prints is followed by "----" and its expected output, ended by a blank
// line; run with -update to rewrite the outputs and read the change as a
// diff. Commands:
//
//	nodes ID...                      add ready, active nodes
//	node ID down|ready|drain|pause|active|label K=V|rm
//	service replicated N|global [restart=any|on-failure|none] [delay=D] [max=N] [window=D] [constraint=C]
//	        [parallelism=N] [update-delay=D] [monitor=D] [action=pause|continue|rollback] [ratio=F]
//	        [order=start-first|stop-first] [rollback-parallelism=N]
//	scale N | image IMG | tick D | fail ID | complete ID
//	resume       clear a paused update's status, as `service update` does
//	rollback     roll the service back to its previous spec (`service rollback`)
//	status       the service's update status
//	run          the scheduler places pending tasks, workers act (prints changes)
//	reconcile    the orchestrator (prints events and the next evaluation)
//	reap N       ReapHistory with limit N (prints deletions)
//	orphan D     OrphanTasks with period D
//	ps           the service's tasks
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runTranscript(t, f) })
	}
}

func runTranscript(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, now: t0, ids: &seq{prefix: "t"}}
	var out strings.Builder
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out.WriteString(line + "\n")
		cmd := strings.Fields(line)
		if len(cmd) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		got, prints := w.exec(cmd)
		if !prints {
			continue
		}
		// Skip the recorded output: "----" up to a blank line.
		var want []string
		if i+1 < len(lines) && lines[i+1] == "----" {
			i += 2
			for ; i < len(lines) && lines[i] != ""; i++ {
				want = append(want, lines[i])
			}
		}
		out.WriteString("----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
		out.WriteString("\n")
		if !*update && !slices.Equal(got, want) {
			t.Errorf("%s: %q:\ngot:\n  %s\nwant:\n  %s", path, line, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// exec runs one command; prints says whether it has output.
func (w *world) exec(cmd []string) (out []string, prints bool) {
	t := w.t
	t.Helper()
	arg := func(i int) string {
		if i >= len(cmd) {
			t.Fatalf("%v: missing argument", cmd)
		}
		return cmd[i]
	}
	num := func(s string) uint64 {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		return n
	}
	dur := func(s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		return d
	}
	switch cmd[0] {
	case "nodes":
		for _, id := range cmd[1:] {
			w.nodes = append(w.nodes, node(id))
		}
	case "node":
		n := w.node(arg(1))
		if n == nil {
			t.Fatalf("%v: no node", cmd)
		}
		n = cloneNode(n)
		switch arg(2) {
		case "down":
			n.Status.State = api.NodeStatus_DOWN
		case "ready":
			n.Status.State = api.NodeStatus_READY
		case "drain":
			n.Spec.Availability = api.NodeSpec_DRAIN
		case "pause":
			n.Spec.Availability = api.NodeSpec_PAUSE
		case "active":
			n.Spec.Availability = api.NodeSpec_ACTIVE
		case "label":
			k, v, _ := strings.Cut(arg(3), "=")
			nodeLabel(k, v)(n)
		case "rm":
			w.nodes = slices.DeleteFunc(w.nodes, func(x *api.Node) bool { return x.Id == n.Id })
			return nil, false
		default:
			t.Fatalf("%v: unknown node change", cmd)
		}
		n.Meta.UpdatedAt = timestamp(w.now) // as the dispatcher's write would
		for i, x := range w.nodes {
			if x.Id == n.Id {
				w.nodes[i] = n
			}
		}
	case "service":
		if arg(1) == "global" {
			w.svc = global()
		} else {
			w.svc = replicated(num(arg(2)))
		}
		upd := func() *api.UpdateConfig {
			if w.svc.Spec.Update == nil {
				w.svc.Spec.Update = &api.UpdateConfig{Parallelism: 1}
			}
			return w.svc.Spec.Update
		}
		for _, kv := range cmd[2:] {
			k, v, _ := strings.Cut(kv, "=")
			rp := w.svc.Spec.Task.Restart
			if rp == nil && (k == "restart" || k == "delay" || k == "max" || k == "window") {
				rp = &api.RestartPolicy{}
				w.svc.Spec.Task.Restart = rp
			}
			switch k {
			case "restart":
				rp.Condition = map[string]api.RestartPolicy_Condition{"any": api.RestartPolicy_ANY,
					"on-failure": api.RestartPolicy_ON_FAILURE, "none": api.RestartPolicy_NONE}[v]
			case "delay":
				rp.Delay = durationpb.New(dur(v))
			case "max":
				rp.MaxAttempts = num(v)
			case "window":
				rp.Window = durationpb.New(dur(v))
			case "parallelism":
				upd().Parallelism = num(v)
			case "update-delay":
				upd().Delay = durationpb.New(dur(v))
			case "monitor":
				upd().Monitor = durationpb.New(dur(v))
			case "action":
				upd().FailureAction = api.UpdateConfig_FailureAction(api.UpdateConfig_FailureAction_value[strings.ToUpper(v)])
			case "ratio":
				f, err := strconv.ParseFloat(v, 32)
				if err != nil {
					t.Fatalf("%v: %v", cmd, err)
				}
				upd().MaxFailureRatio = float32(f)
			case "order":
				upd().Order = api.UpdateConfig_Order(api.UpdateConfig_Order_value[strings.ToUpper(strings.ReplaceAll(v, "-", "_"))])
			case "rollback-parallelism":
				if w.svc.Spec.Rollback == nil {
					w.svc.Spec.Rollback = &api.UpdateConfig{}
				}
				w.svc.Spec.Rollback.Parallelism = num(v)
			case "constraint":
				constraint(v)(w.svc)
			default:
				if _, err := strconv.Atoi(kv); err != nil || k != kv {
					t.Fatalf("%v: unknown option %s", cmd, kv)
				}
			}
		}
	case "scale":
		w.svc.Spec.GetReplicated().Replicas = num(arg(1))
		w.svc.SpecVersion++
	case "image":
		w.updateSpec(func(s *api.ServiceSpec) { s.Task.Container.Image = arg(1) })
	case "resume": // `service update` of a paused update: clears the status
		w.svc.UpdateStatus = nil
	case "rollback": // `service rollback`, as the control API does it
		w.applyService(Result{Rollback: "manually requested rollback"})
	case "status":
		st := w.svc.GetUpdateStatus()
		return []string{fmt.Sprintf("%s %q", st.GetState(), st.GetMessage())}, true
	case "tick":
		w.now = w.now.Add(dur(arg(1)))
	case "fail", "complete":
		x := find(w.tasks, arg(1))
		if x == nil {
			t.Fatalf("%v: no task", cmd)
		}
		x = cloneTask(x)
		w.setState(x, map[string]api.TaskState{"fail": api.TaskState_FAILED, "complete": api.TaskState_COMPLETE}[cmd[0]])
		w.replaceTask(x)
	case "run":
		return w.runDeterministic(), true
	case "reconcile":
		r := w.orchestrate()
		out = append(out, r.Events...)
		if !r.NextEvaluation.IsZero() {
			out = append(out, "next evaluation: +"+r.NextEvaluation.Sub(w.now).String())
		}
		return out, true
	case "reap":
		r := ReapHistory([]*api.Service{w.svc}, w.tasks, int(num(arg(1))))
		w.tasks = apply(t, w.tasks, r)
		for _, id := range r.Delete {
			out = append(out, "delete "+id)
		}
		return out, true
	case "orphan":
		r := OrphanTasks(w.nodes, w.tasks, w.now, dur(arg(1)))
		w.tasks = apply(t, w.tasks, r)
		out = append(out, r.Events...)
		if !r.NextEvaluation.IsZero() {
			out = append(out, "next evaluation: +"+r.NextEvaluation.Sub(w.now).String())
		}
		return out, true
	case "ps":
		ts := slices.Clone(w.tasks)
		slices.SortFunc(ts, func(a, b *api.Task) int {
			if a.Slot != b.Slot {
				return int(a.Slot) - int(b.Slot)
			}
			if a.Slot == 0 && a.NodeId != b.NodeId {
				return strings.Compare(a.NodeId, b.NodeId)
			}
			return newestFirst(b, a)
		})
		for _, x := range ts {
			where := fmt.Sprint(x.Slot)
			if x.Slot == 0 {
				where = "-"
			}
			out = append(out, fmt.Sprintf("%-4s slot %-2s node %-3s %-9s desired %-8s %s", x.Id, where, orDash(x.NodeId),
				x.Status.GetState(), x.DesiredState, x.Spec.GetContainer().GetImage()))
		}
		return out, true
	default:
		t.Fatalf("unknown command %v", cmd)
	}
	return nil, false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (w *world) replaceTask(x *api.Task) {
	for i, y := range w.tasks {
		if y.Id == x.Id {
			w.tasks[i] = x
		}
	}
}

// runDeterministic is world.run with a fixed placement rule (the ready node
// with the fewest wanted tasks of the service, then the lowest ID), printing
// what changed.
func (w *world) runDeterministic() []string {
	var out []string
	load := map[string]int{}
	for _, x := range w.tasks {
		if x.NodeId != "" && !isTerminal(x) && x.DesiredState <= api.TaskState_RUNNING {
			load[x.NodeId]++
		}
	}
	for i, x := range w.tasks {
		x = cloneTask(x)
		before, nodeBefore := x.Status.GetState(), x.NodeId
		n := w.node(x.NodeId)
		switch {
		case x.NodeId == "" && x.DesiredState <= api.TaskState_RUNNING:
			var best *api.Node
			for _, c := range w.nodes {
				if nodeTakesNew(c) && constraintsMatch(x, c) && (best == nil || load[c.Id] < load[best.Id]) {
					best = c
				}
			}
			if best == nil {
				continue
			}
			x.NodeId = best.Id
			load[best.Id]++
			w.setState(x, api.TaskState_ASSIGNED)
		case x.NodeId == "" || isTerminal(x) || n == nil || nodeLost(n):
		case x.Status.GetState() < api.TaskState_ASSIGNED && x.DesiredState <= api.TaskState_RUNNING:
			w.setState(x, api.TaskState_ASSIGNED) // a global task: the scheduler only checks it
		case x.DesiredState > api.TaskState_RUNNING:
			w.setState(x, api.TaskState_SHUTDOWN)
		case x.Status.GetState() < x.DesiredState:
			w.setState(x, x.DesiredState)
		}
		if x.Status.GetState() != before {
			w.tasks[i] = x
			if x.NodeId != nodeBefore {
				out = append(out, fmt.Sprintf("%s assigned to %s", x.Id, x.NodeId))
			} else {
				out = append(out, fmt.Sprintf("%s %s -> %s", x.Id, before, x.Status.GetState()))
			}
		}
	}
	return out
}
