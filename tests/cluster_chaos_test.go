package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/tests/harness"
	"golang.org/x/sys/unix"
)

// chaosNames are the services the load works on: few, so that clients
// collide on them (creates of a taken name, updates from a stale version).
// A dash, which no ID has: a name is also looked up as an ID prefix, and
// "c1" finds the service whose ID starts with c1 when none is named so.
var chaosNames = []string{"s-0", "s-1", "s-2", "s-3", "s-4", "s-5"}

// chaosDuration is how long the load and the faults run: a minute in
// `make test`, $SHOAL_CHAOS_MINUTES minutes when set (`make chaos`).
func chaosDuration(t *testing.T) time.Duration {
	v := os.Getenv("SHOAL_CHAOS_MINUTES")
	if v == "" {
		return time.Minute
	}
	m, err := strconv.ParseFloat(v, 64)
	if err != nil || m <= 0 {
		t.Fatalf("SHOAL_CHAOS_MINUTES=%q: want a positive number of minutes", v)
	}
	return time.Duration(m * float64(time.Minute))
}

// TestClusterChaos runs a 3-manager, 4-worker swarm under a steady load of
// service creates, updates, scales, removes and reads, sent through the REST
// API of every manager, while it kills -9 and restarts random nodes (the
// daemon alone or the whole host), cuts managers off the network and fills
// a worker's disk, one fault at a time (never more than one manager away:
// quorum holds). Reads through a manager that may be without a leader are
// left out of the history: such a manager answers from its own copy, by
// design (manager.go), which is not linearizable. Then it heals everything
// and checks that the history of the operations is linearizable (porcupine,
// with chaosModel: an acknowledged write that is lost, a stale read, two
// updates that both won from one version are violations), reads every
// service through every manager at the end (in the history too), waits for
// convergence and checks that no slot runs two tasks (in the store and in the
// engines), that every service has its replicas and nothing else runs, and
// that no daemon panicked.
func TestClusterChaos(t *testing.T) {
	dur := chaosDuration(t)
	c := newSwarm(t, 3, 4)
	full := c.workers[len(c.workers)-1]
	smallRoot(t, c, full, 64<<20)
	for _, m := range c.managers {
		t.Cleanup(m.Heal)
	}
	// On failure, before the hosts go (cleanups run last first), the
	// daemons' logs are kept where $SHOAL_CHAOS_EVIDENCE says.
	t.Cleanup(func() {
		dir := os.Getenv("SHOAL_CHAOS_EVIDENCE")
		if dir == "" || !t.Failed() {
			return
		}
		for _, h := range c.Hosts {
			if err := os.WriteFile(filepath.Join(dir, h.Name+".log"), []byte(h.Daemon.Log()), 0o644); err != nil {
				t.Errorf("keep the log of %s: %v", h.Name, err)
			}
		}
		t.Logf("the daemons' logs are in %s", dir)
	})

	rec := &chaosRecorder{t0: time.Now()}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Two clients per manager, each with its own connection to it.
	for i := 0; i < 2*len(c.managers); i++ {
		cl := &chaosClient{id: i, rest: newRESTClient(c.managers[i%len(c.managers)]), rec: rec,
			rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))}
		wg.Add(1)
		go func() { defer wg.Done(); cl.run(ctx) }()
	}
	t.Cleanup(func() { stop(); wg.Wait() }) // also when a fault fails the test

	faults := chaosFaults(t, c, rec, full, dur)
	stop()
	wg.Wait()

	// Heal everything (every fault undoes itself; this is for a fault
	// that failed half-way) and wait for the swarm to be whole.
	for _, m := range c.managers {
		m.Heal()
	}
	removeFill(full)
	waitWhole(t, c, "the chaos")
	// An unknown outcome may take effect until here: once every manager is
	// back under one leader, a write is committed or it never will be.
	rec.settle()

	// The final reads, through every manager, close the history (the
	// checker compares them); the first manager's say what must run.
	final := map[string]swarm.Service{}
	for i, m := range c.managers {
		rc := newRESTClient(m)
		for _, name := range chaosNames {
			svc, out, ok := chaosRead(rec, rc, 100+i, name)
			if !ok {
				t.Errorf("final read of %s through %s failed", name, m.Name)
				continue
			}
			if out.Outcome == outOK && i == 0 {
				final[name] = svc
			}
		}
	}

	violations := 0
	history := rec.history()
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(chaosModel.ToModel(), history, 3*time.Minute)
	t.Logf("linearizability check of %d operations: %s in %v", len(history), res, time.Since(checkStart).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		violations += reportIllegal(t, history, info)
	case porcupine.Unknown:
		t.Errorf("the linearizability check of %d operations did not finish in 3 minutes: the history is not checked", len(history))
	}

	violations += checkConvergence(t, c, final)
	for _, h := range c.Hosts {
		log := h.Daemon.Log()
		for _, bad := range []string{"panic:", "fatal error:"} {
			if i := strings.Index(log, bad); i >= 0 {
				violations++
				t.Errorf("daemon of %s printed %q:\n%s", h.Name, bad, log[i:min(len(log), i+3000)])
			}
		}
	}

	writes, reads, unknown, refused := rec.counts()
	summary := fmt.Sprintf("chaos %v on %d managers + %d workers: operations acknowledged %d (%d writes, %d reads; besides, %d writes of unknown outcome, %d refused, %d reads of leaderless managers not checked), faults injected %d (%s), violations found %d",
		dur, len(c.managers), len(c.workers), writes+reads, writes, reads, unknown, refused, rec.stale, faults.total(), faults, violations)
	t.Log(summary)
	t.Logf("errors seen by the clients:\n%s", rec.errorDigest())
	if os.Getenv("SHOAL_CHAOS_MINUTES") != "" {
		fmt.Println(summary)
	}
}

// chaosFaultCounts counts the faults injected, by kind.
type chaosFaultCounts map[string]int

func (f chaosFaultCounts) total() int {
	n := 0
	for _, v := range f {
		n += v
	}
	return n
}

func (f chaosFaultCounts) String() string {
	var out []string
	for k, v := range f {
		out = append(out, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// chaosFaults injects faults one at a time until dur has passed: each is
// undone before the next, and the next waits until the swarm is whole again
// (every node Ready, every manager reachable and knowing the leader), so
// that quorum is never lost for longer than a fault lasts. A manager's
// fault marks it leaderless in rec (every manager when it was the leader:
// the others' forwarded reads fall back to their own copies when the leader
// is lost) until it knows the leader again.
func chaosFaults(t *testing.T, c *swarmCluster, rec *chaosRecorder, full *harness.Host, dur time.Duration) chaosFaultCounts {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	counts := chaosFaultCounts{}
	hold := func() { time.Sleep(3*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))) }
	end := time.Now().Add(dur)
	for i := 0; time.Now().Before(end); i++ {
		var marked []*harness.Host
		mark := func(h *harness.Host) {
			if !slices.Contains(c.managers, h) {
				return
			}
			marked = []*harness.Host{h}
			if ns, r := nodeList(h); r.Code != 0 || managerStatus(ns, h.Name) == "Leader" {
				marked = c.managers
			}
			for _, m := range marked {
				rec.mark(m, true)
			}
		}
		switch i % 3 {
		case 0:
			h := c.Hosts[rng.IntN(len(c.Hosts))]
			mark(h)
			// Every other time the daemon alone, its containers left
			// running for the restarted daemon to adopt; else the whole
			// host, as a power loss.
			if i%2 == 0 {
				t.Logf("fault %d: kill -9 the daemon of %s", i+1, h.Name)
				h.Daemon.Kill9()
				hold()
				h.Daemon.Restart()
				counts["kill -9 daemon"]++
			} else {
				t.Logf("fault %d: kill -9 all of %s", i+1, h.Name)
				h.KillAll()
				hold()
				h.Restart()
				counts["kill -9 host"]++
			}
		case 1:
			m := c.managers[rng.IntN(len(c.managers))]
			t.Logf("fault %d: partition %s", i+1, m.Name)
			mark(m)
			m.Partition()
			hold()
			m.Heal()
			counts["partition"]++
		case 2:
			t.Logf("fault %d: fill the disk of %s", i+1, full.Name)
			if err := fillDisk(full); err != nil {
				t.Fatalf("fill the disk of %s: %v", full.Name, err)
			}
			hold()
			removeFill(full)
			counts["disk full"]++
		}
		waitWhole(t, c, fmt.Sprintf("fault %d was undone", i+1))
		for _, m := range marked {
			rec.mark(m, false)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Second))))
	}
	return counts
}

// waitWhole waits until every node is Ready and every manager reachable (as
// a manager's `node ls` says) and every manager knows the leader (its own
// `info`: a manager without one answers reads from its own copy), and fails
// t when that takes more than 90 s.
func waitWhole(t *testing.T, c *swarmCluster, after string) {
	t.Helper()
	var why string
	ok := pollUntil(90*time.Second, func() bool {
		for _, m := range c.managers {
			var info struct{ Swarm struct{ Error string } }
			if _, _, err := newRESTClient(m).do(http.MethodGet, "/info", nil, &info); err != nil || info.Swarm.Error != "" {
				why = fmt.Sprintf("%s: %v %s", m.Name, err, info.Swarm.Error)
				return false
			}
		}
		ns, r := nodeList(c.managers[0])
		why = fmt.Sprintf("node ls on %s:\n%s%s", c.managers[0].Name, nodeTable(ns), r)
		return r.Code == 0 && swarmHealthy(ns, len(c.Hosts), c.managers...)
	})
	if !ok {
		t.Fatalf("the swarm is not whole 90s after %s: %s", after, why)
	}
}

// smallRoot gives h's daemon a data root of its own small filesystem (a
// size-limited tmpfs), so that fillDisk can fill it: the daemon is killed,
// its root copied onto the tmpfs mounted in its place, and restarted. The
// harness's removal of the daemon unmounts whatever is mounted under its
// directory (a crashed run's leftover too, through Sweep).
func smallRoot(t *testing.T, c *swarmCluster, h *harness.Host, size int) {
	t.Helper()
	root := h.Daemon.Root
	h.KillAll()
	orig := root + ".orig"
	err := os.Rename(root, orig)
	if err == nil {
		err = os.Mkdir(root, 0o711)
	}
	if err == nil {
		err = unix.Mount("tmpfs", root, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0711", size))
	}
	if err == nil {
		if out, cerr := exec.Command("cp", "-a", orig+"/.", root+"/").CombinedOutput(); cerr != nil {
			err = fmt.Errorf("cp: %v: %s", cerr, out)
		}
	}
	if err == nil {
		err = os.RemoveAll(orig)
	}
	if err != nil {
		t.Fatalf("small root for %s: %v", h.Name, err)
	}
	h.Restart()
	c.waitNodes(t, c.managers[0], func(ns []nodeLine) bool { return swarmHealthy(ns, len(c.Hosts), c.managers...) },
		60*time.Second, h.Name+" back on its small root")
}

func fillPath(h *harness.Host) string { return filepath.Join(h.Daemon.Root, "chaos-fill") }

// fillDisk takes every free block of h's data root.
func fillDisk(h *harness.Host) error {
	var st unix.Statfs_t
	if err := unix.Statfs(h.Daemon.Root, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	f, err := os.Create(fillPath(h))
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				return err
			}
			if err := unix.Statfs(h.Daemon.Root, &st); err != nil {
				return fmt.Errorf("statfs: %w", err)
			}
			if free := st.Bavail * uint64(st.Bsize); free > 64<<10 {
				return fmt.Errorf("%d bytes still free after ENOSPC", free)
			}
			return nil
		}
	}
}

func removeFill(h *harness.Host) { _ = os.Remove(fillPath(h)) }

// restClient sends requests to one daemon's REST API; every request on a
// connection of its own, so that a request that could not connect is known
// not to have been sent.
type restClient struct {
	host *harness.Host
	http *http.Client
}

func newRESTClient(h *harness.Host) *restClient {
	sock := h.Daemon.Socket
	return &restClient{host: h, http: &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}}
}

// errNotSent: the request never reached the daemon (it is down).
var errNotSent = errors.New("not sent")

// do sends a request and decodes a 2xx answer into out. The error is
// errNotSent when it could not connect; any other error leaves the outcome
// unknown. A non-2xx status comes back with the body's message.
func (c *restClient) do(method, path string, in, out any) (int, string, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, "", err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://shoal"+path, body)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return 0, "", errNotSent
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode/100 != 2 {
		var msg struct{ Message string }
		_ = json.Unmarshal(b, &msg)
		return resp.StatusCode, msg.Message, nil
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, "", fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, "", nil
}

var (
	chaosIDs     = regexp.MustCompile(`\b[0-9a-z]{25}\b|\b[0-9a-f]{12,64}\b`)
	chaosNumbers = regexp.MustCompile(`\b[0-9]+\b`)
)

// chaosRecorder collects the history: every operation with its invocation
// and return times (ns since t0).
type chaosRecorder struct {
	t0 time.Time
	mu sync.Mutex
	// ops are the finished operations; pending marks those whose outcome is
	// unknown: they return at the end of the history (settle).
	ops     []porcupine.Operation
	pending []int
	settled bool
	errs    map[string]int
	// leaderless marks the managers that may be without a leader (cut off,
	// killed, not yet caught up): they answer reads from their own copy
	// (by design, see manager.go), which may be stale. epochs count the
	// marks, so that a read that spans one is known too.
	leaderless map[string]bool
	epochs     map[string]int
	// stale counts the reads answered while their manager was so marked:
	// they are left out of the history.
	stale int
}

// mark sets or clears h's leaderless mark.
func (r *chaosRecorder) mark(h *harness.Host, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leaderless == nil {
		r.leaderless, r.epochs = map[string]bool{}, map[string]int{}
	}
	r.leaderless[h.Name] = on
	r.epochs[h.Name]++
}

// markOf is h's mark and its epoch, for a read to compare before and after.
func (r *chaosRecorder) markOf(h *harness.Host) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaderless[h.Name], r.epochs[h.Name]
}

func (r *chaosRecorder) now() int64 { return time.Since(r.t0).Nanoseconds() }

// add records an operation; one with an unknown outcome gets its return
// time from settle.
func (r *chaosRecorder) add(client int, call int64, in chaosInput, out chaosOutput) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op := porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: r.now()}
	if out.Outcome == outUnknown {
		r.pending = append(r.pending, len(r.ops))
	}
	r.ops = append(r.ops, op)
}

// failed counts an error a client saw, by its message.
func (r *chaosRecorder) failed(kind chaosKind, status int, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = map[string]int{}
	}
	// IDs and versions make every message different.
	msg = chaosIDs.ReplaceAllString(msg, "ID")
	msg = chaosNumbers.ReplaceAllString(msg, "N")
	if len(msg) > 120 {
		msg = msg[:120]
	}
	r.errs[fmt.Sprintf("%s %d %s", kind, status, msg)]++
}

// settle gives every operation of unknown outcome the present as its return
// time: it may have taken effect at any time until now.
func (r *chaosRecorder) settle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, i := range r.pending {
		r.ops[i].Return = now
	}
	r.settled = true
}

func (r *chaosRecorder) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.settled {
		panic("chaosRecorder.history before settle")
	}
	return append([]porcupine.Operation(nil), r.ops...)
}

// counts are the writes acknowledged, the reads answered, and the writes of
// unknown outcome and refused (404, 409).
func (r *chaosRecorder) counts() (writes, reads, unknown, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, op := range r.ops {
		out := op.Output.(chaosOutput).Outcome
		switch {
		case op.Input.(chaosInput).Kind == opRead:
			reads++
		case out == outOK:
			writes++
		case out == outUnknown:
			unknown++
		default:
			refused++
		}
	}
	return writes, reads, unknown, refused
}

func (r *chaosRecorder) errorDigest() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.errs))
	for k := range r.errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return r.errs[keys[i]] > r.errs[keys[j]] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %5d x %s\n", r.errs[k], k)
	}
	return b.String()
}

// chaosClient is one client of the load: it sends operations to one manager
// one after the other, as a user at a terminal would.
type chaosClient struct {
	id   int
	rest *restClient
	rec  *chaosRecorder
	rng  *rand.Rand
	seq  int
}

func (c *chaosClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		name := chaosNames[c.rng.IntN(len(chaosNames))]
		switch p := c.rng.IntN(100); {
		case p < 20:
			chaosRead(c.rec, c.rest, c.id, name)
		case p < 40:
			c.create(name)
		case p < 88:
			c.update(name, p < 64)
		default:
			c.remove(name)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50*time.Millisecond + time.Duration(c.rng.Int64N(int64(200*time.Millisecond)))):
		}
	}
}

// label is a value no other write sets.
func (c *chaosClient) label() string {
	c.seq++
	return fmt.Sprintf("k%d-%d", c.id, c.seq)
}

// chaosSpec is a service spec as the load writes it: busybox sleeping, a
// label that names the write, env GEN that changes on an update (a rolling
// update of the tasks), replicas changed by a scale.
func chaosSpec(name, label string, replicas int, gen string) swarm.ServiceSpec {
	r := uint64(replicas)
	grace := time.Second
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{"chaos": label}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image: "busybox:latest", Command: []string{"sleep", "86400"}, Env: []string{"GEN=" + gen}, StopGracePeriod: &grace,
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &r}},
	}
}

// outcome classifies the answer to a write; sent is false when the request
// never reached the daemon (it then did nothing and is left out).
func outcome(status int, err error) (out chaosOutcome, sent bool) {
	switch {
	case errors.Is(err, errNotSent):
		return 0, false
	case err != nil:
		return outUnknown, true
	case status/100 == 2:
		return outOK, true
	case status == http.StatusNotFound:
		return outNotFound, true
	case status == http.StatusConflict:
		return outConflict, true
	}
	// 5xx: no leader, the leader lost while forwarding, a timeout in the
	// managers: the write may have been applied.
	return outUnknown, true
}

func (c *chaosClient) write(in chaosInput, call int64, status int, msg string, err error) {
	out, sent := outcome(status, err)
	if err != nil {
		msg = err.Error()
	}
	if out != outOK || !sent {
		c.rec.failed(in.Kind, status, msg)
	}
	if sent {
		c.rec.add(c.id, call, in, chaosOutput{Outcome: out})
	}
}

func (c *chaosClient) create(name string) {
	in := chaosInput{Kind: opCreate, Name: name, Label: c.label(), Replicas: 1 + c.rng.IntN(3)}
	call := c.rec.now()
	status, msg, err := c.rest.do(http.MethodPost, "/services/create", chaosSpec(name, in.Label, in.Replicas, in.Label), nil)
	c.write(in, call, status, msg, err)
}

// update reads the service, then sends it back with a new label and, for a
// scale, new replicas, or, for an update, a new GEN, at the version read.
func (c *chaosClient) update(name string, scale bool) {
	svc, read, ok := chaosRead(c.rec, c.rest, c.id, name)
	if !ok || read.Outcome != outOK {
		return
	}
	in := chaosInput{Kind: opUpdate, Name: name, Expect: read.Label, Label: c.label(), Replicas: read.Replicas}
	gen := ""
	if env := svc.Spec.TaskTemplate.ContainerSpec.Env; len(env) > 0 {
		gen = strings.TrimPrefix(env[0], "GEN=")
	}
	if scale {
		in.Replicas = c.rng.IntN(4)
	} else {
		gen = in.Label
	}
	call := c.rec.now()
	path := fmt.Sprintf("/services/%s/update?version=%d", svc.ID, svc.Version.Index)
	status, msg, err := c.rest.do(http.MethodPost, path, chaosSpec(name, in.Label, in.Replicas, gen), nil)
	c.write(in, call, status, msg, err)
}

func (c *chaosClient) remove(name string) {
	in := chaosInput{Kind: opRemove, Name: name}
	call := c.rec.now()
	status, msg, err := c.rest.do(http.MethodDelete, "/services/"+name, nil, nil)
	c.write(in, call, status, msg, err)
}

// chaosRead inspects name and records the read; ok is false when it got no
// answer (a read without one changes nothing and is left out).
func chaosRead(rec *chaosRecorder, rc *restClient, client int, name string) (swarm.Service, chaosOutput, bool) {
	var svc swarm.Service
	marked, epoch := rec.markOf(rc.host)
	call := rec.now()
	status, msg, err := rc.do(http.MethodGet, "/services/"+name, nil, &svc)
	markedAfter, epochAfter := rec.markOf(rc.host)
	var out chaosOutput
	switch {
	case err == nil && status == http.StatusOK && svc.Spec.Name != name:
		// Not a read of this name: the lookup found it by ID prefix.
		rec.failed(opRead, status, "answered with service "+svc.Spec.Name)
		return svc, out, false
	case err == nil && status == http.StatusOK:
		out = chaosOutput{Outcome: outOK, Label: svc.Spec.Labels["chaos"]}
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			out.Replicas = int(*r.Replicas)
		}
	case err == nil && status == http.StatusNotFound:
		out = chaosOutput{Outcome: outNotFound}
	default:
		if err != nil {
			msg = err.Error()
		}
		rec.failed(opRead, status, msg)
		return svc, out, false
	}
	if marked || markedAfter || epoch != epochAfter {
		// Maybe from a leaderless manager's own copy: not checked.
		rec.mu.Lock()
		rec.stale++
		rec.mu.Unlock()
		return svc, out, true
	}
	rec.add(client, call, chaosInput{Kind: opRead, Name: name}, out)
	return svc, out, true
}

// reportIllegal fails t with the evidence of every name whose history is
// not linearizable: the operations around the point where the longest
// linearizable prefix ends, and a visualization of the whole history
// (porcupine's HTML) in the test's temporary directory or
// $SHOAL_CHAOS_EVIDENCE. It returns the number of such names.
func reportIllegal(t *testing.T, history []porcupine.Operation, info porcupine.LinearizationInfo) int {
	t.Helper()
	model := chaosModel.ToModel()
	n := 0
	for _, part := range chaosModel.Partition(history) {
		res, pinfo := porcupine.CheckOperationsVerbose(model, part, time.Minute)
		if res == porcupine.Ok {
			continue
		}
		n++
		name := part[0].Input.(chaosInput).Name
		if res == porcupine.Unknown {
			t.Errorf("the history of service %s: the check of its %d operations alone did not finish in a minute", name, len(part))
			continue
		}
		// The last operation of the longest linearizable prefix: what
		// follows it cannot be ordered.
		var at int64
		for _, lin := range pinfo.PartialLinearizationsOperations()[0] {
			if len(lin) > 0 && lin[len(lin)-1].Call > at {
				at = lin[len(lin)-1].Call
			}
		}
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		var b strings.Builder
		for _, op := range part {
			if op.Call < at-int64(5*time.Second) || op.Call > at+int64(5*time.Second) {
				continue
			}
			ret := fmt.Sprintf("%.3fs", float64(op.Return)/1e9)
			if op.Output.(chaosOutput).Outcome == outUnknown {
				ret = "end"
			}
			fmt.Fprintf(&b, "  client %3d [%.3fs, %s] %s\n", op.ClientId, float64(op.Call)/1e9, ret,
				describeChaosOp(op.Input.(chaosInput), op.Output.(chaosOutput)))
		}
		t.Errorf("the history of service %s is not linearizable after %.3fs; its operations called 5s around that:\n%s", name, float64(at)/1e9, b.String())
	}
	dir := os.Getenv("SHOAL_CHAOS_EVIDENCE")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "chaos-history.html")
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Errorf("visualize the history: %v", err)
	} else {
		t.Errorf("the history, visualized: %s", path)
	}
	return n
}

// chaosTask is a running task container on an engine.
type chaosTask struct{ host, service, slot string }

// checkConvergence waits until every service of the final reads runs its
// replicas, one task per slot, in the store (`service ps`) and in the
// engines (the containers running on the hosts), with nothing else running,
// and reports what is still wrong when it does not happen in time.
func checkConvergence(t *testing.T, c *swarmCluster, final map[string]swarm.Service) int {
	t.Helper()
	var problems []string
	ok := pollUntil(3*time.Minute, func() bool {
		problems = convergenceProblems(c, final)
		return len(problems) == 0
	})
	if ok {
		return 0
	}
	for _, p := range problems {
		t.Errorf("after convergence: %s", p)
	}
	return len(problems)
}

func convergenceProblems(c *swarmCluster, final map[string]swarm.Service) []string {
	var problems []string
	via := c.managers[0]
	byID := map[string]swarm.Service{}
	for _, name := range chaosNames {
		svc, exists := final[name]
		if !exists {
			continue
		}
		byID[svc.ID] = svc
		want := int(*svc.Spec.Mode.Replicated.Replicas)
		p, r := placementOf(via, name)
		switch {
		case r.Code != 0:
			problems = append(problems, fmt.Sprintf("service ps %s: %s", name, r))
		case len(p.dupes) > 0:
			problems = append(problems, fmt.Sprintf("service %s: two running tasks in one slot in the store: %v", name, p))
		case p.total != want:
			problems = append(problems, fmt.Sprintf("service %s: %d running tasks in the store, want %d: %v", name, p.total, want, p))
		}
	}
	var running []chaosTask
	for _, h := range c.Hosts {
		r := h.Daemon.Run("ps", "--no-trunc", "--format", `{{.Label "com.docker.swarm.service.id"}}|{{.Label "com.docker.swarm.task.name"}}`)
		if r.Code != 0 {
			problems = append(problems, fmt.Sprintf("ps on %s: %s", h.Name, r))
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			// The task name is SERVICE.SLOT.TASKID.
			if svc, task, ok := strings.Cut(line, "|"); ok && svc != "" {
				f := strings.Split(task, ".")
				running = append(running, chaosTask{h.Name, svc, f[min(1, len(f)-1)]})
			}
		}
	}
	perSlot := map[string][]string{}
	perService := map[string]int{}
	for _, task := range running {
		svc, exists := byID[task.service]
		if !exists {
			problems = append(problems, fmt.Sprintf("%s runs a task of service %s, which no longer exists (slot %s)", task.host, task.service, task.slot))
			continue
		}
		key := svc.Spec.Name + "." + task.slot
		perSlot[key] = append(perSlot[key], task.host)
		perService[svc.Spec.Name]++
	}
	for key, hosts := range perSlot {
		if len(hosts) > 1 {
			problems = append(problems, fmt.Sprintf("slot %s runs on %d engines: %v", key, len(hosts), hosts))
		}
	}
	for _, svc := range byID {
		if want := int(*svc.Spec.Mode.Replicated.Replicas); perService[svc.Spec.Name] != want {
			problems = append(problems, fmt.Sprintf("service %s: %d task containers run on the engines, want %d", svc.Spec.Name, perService[svc.Spec.Name], want))
		}
	}
	sort.Strings(problems)
	return problems
}
