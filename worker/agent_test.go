package worker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

// TestMain makes the test binary double as the container init and the shim,
// as the engine's own tests do.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			runtime.InitMain()
		case "shim":
			shim.Main(os.Args[2:])
		}
	}
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	os.Exit(m.Run())
}

// busyboxTar is a rootfs of /bin/busybox and its applet symlinks.
func busyboxTar(t *testing.T) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "root/", "tmp/"} {
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			add(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newEngine opens an engine over a fresh root with a busybox image; all of
// it (containers, shims, mounts, cgroups, files) goes when the test ends.
func newEngine(t *testing.T) *EngineRuntime {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (busybox-static)")
	}
	root, err := os.MkdirTemp("/tmp", "shoalwk")
	if err != nil {
		t.Fatal(err)
	}
	cgParent := fmt.Sprintf("shoal-test-wk-%d", os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	var e *containers.Engine
	t.Cleanup(func() {
		if e != nil {
			for _, c := range e.List(true) {
				_ = e.Remove(context.Background(), c.ID, true)
			}
		}
		cancel()
		// A start the agent had in flight when the test ended can still
		// make a shim (and move it into the shims cgroup) after the first
		// sweep: sweep until nothing is left.
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			killShims(root)
			unmountUnder(root)
			dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgParent))
			for _, d := range dirs {
				subs, _ := filepath.Glob(filepath.Join(d, "*"))
				for _, s := range subs {
					if fi, err := os.Stat(s); err == nil && fi.IsDir() {
						_ = unix.Rmdir(s)
					}
				}
				_ = unix.Rmdir(d)
			}
			if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgParent)); len(left) == 0 || time.Now().After(end) {
				break
			}
		}
		os.RemoveAll(root)
	})
	imgs, err := images.Open(filepath.Join(root, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imgs.Import(context.Background(), bytes.NewReader(busyboxTar(t)), "busybox:latest", images.ImportOptions{
		Config: ocispec.ImageConfig{Cmd: []string{"sh"}},
	}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e, err = containers.Open(ctx, containers.Options{
		Root: filepath.Join(root, "data"), ExecRoot: filepath.Join(root, "exec"),
		CgroupParent: cgParent, Images: imgs, Binary: self,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &EngineRuntime{Engine: e, Images: imgs}
}

// killShims ends the engine's shims (a shim outlives its last container
// until its engine ends) and gives them until they have exited, so that
// the cgroup they are in can go.
func killShims(root string) {
	var left []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("\x00shim\x00")) && bytes.Contains(b, []byte(root)) {
			var pid int
			if _, err := fmt.Sscan(ent.Name(), &pid); err == nil {
				_ = unix.Kill(pid, unix.SIGKILL)
				left = append(left, ent.Name())
			}
		}
	}
	for end := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		// A zombie ("Z" after the command's parenthesis) has left its cgroups.
		if st, err := os.ReadFile("/proc/" + left[0] + "/stat"); err != nil || bytes.Contains(st, []byte(") Z")) {
			left = left[1:]
		}
	}
}

func unmountUnder(dir string) {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			ms = append(ms, f[4])
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		_ = unix.Unmount(ms[i], unix.MNT_DETACH)
	}
}

// fakeManager is a Dispatcher server that the test drives: the manager side
// has its own tests; this one only plays the protocol.
type fakeManager struct {
	api.UnimplementedDispatcherServer
	assign chan *api.AssignmentsMessage

	peers []*api.WeightedPeer

	mu       sync.Mutex
	statuses map[string]*api.TaskStatus
	beats    int
}

func (f *fakeManager) Session(_ *api.SessionRequest, s api.Dispatcher_SessionServer) error {
	if err := s.Send(&api.SessionMessage{SessionId: "s1", Managers: f.peers}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (f *fakeManager) Heartbeat(context.Context, *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	f.mu.Lock()
	f.beats++
	f.mu.Unlock()
	return &api.HeartbeatResponse{Period: durationpb.New(50 * time.Millisecond)}, nil
}

func (f *fakeManager) UpdateTaskStatus(_ context.Context, req *api.UpdateTaskStatusRequest) (*api.UpdateTaskStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range req.GetUpdates() {
		f.statuses[u.GetTaskId()] = u.GetStatus()
	}
	return &api.UpdateTaskStatusResponse{}, nil
}

func (f *fakeManager) Assignments(_ *api.AssignmentsRequest, s api.Dispatcher_AssignmentsServer) error {
	for {
		select {
		case <-s.Context().Done():
			return nil
		case m := <-f.assign:
			if err := s.Send(m); err != nil {
				return err
			}
		}
	}
}

func (f *fakeManager) status(id string) *api.TaskStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statuses[id]
}

// startAgent serves a fakeManager over an in-memory connection and runs an
// agent against it until the test ends.
func startAgent(t *testing.T, rt Runtime) *fakeManager {
	t.Helper()
	fms, _ := startAgentN(t, rt, 1)
	return fms[0]
}

// startAgentN serves n fakeManagers, at addresses m0..m<n-1>, each on its
// own in-memory listener, and runs an agent that knows only m0. stop(i)
// stops manager i's server (its connections fail).
func startAgentN(t *testing.T, rt Runtime, n int) (fms []*fakeManager, stop func(i int)) {
	t.Helper()
	return startAgentCfg(t, rt, n, 0)
}

// startAgentWith is startAgent with a start window of at most maxStarts.
func startAgentWith(t *testing.T, rt Runtime, maxStarts int) *fakeManager {
	t.Helper()
	fms, _ := startAgentCfg(t, rt, 1, maxStarts)
	return fms[0]
}

func startAgentCfg(t *testing.T, rt Runtime, n, maxStarts int, opts ...func(*Config)) (fms []*fakeManager, stop func(i int)) {
	t.Helper()
	var peers []*api.WeightedPeer
	for i := 0; i < n; i++ {
		peers = append(peers, &api.WeightedPeer{NodeId: fmt.Sprint("node-m", i), Addr: fmt.Sprint("m", i), Weight: 1})
	}
	lis := map[string]*bufconn.Listener{}
	var srvs []*grpc.Server
	for i := 0; i < n; i++ {
		fm := &fakeManager{assign: make(chan *api.AssignmentsMessage, 8), statuses: map[string]*api.TaskStatus{}, peers: peers}
		l := bufconn.Listen(1 << 20)
		srv := grpc.NewServer()
		api.RegisterDispatcherServer(srv, fm)
		go srv.Serve(l)
		fms, srvs = append(fms, fm), append(srvs, srv)
		lis[fmt.Sprint("m", i)] = l
	}
	dial := func(ctx context.Context, addr string) (Conn, error) {
		l, ok := lis[addr]
		if !ok {
			return nil, fmt.Errorf("no manager at %s", addr)
		}
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		return clientConn{api.NewDispatcherClient(cc), cc}, nil
	}
	cfg := Config{Managers: []string{"m0"}, Dial: dial, Runtime: rt, RetryDelay: 50 * time.Millisecond, MaxConcurrentStarts: maxStarts}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		for _, s := range srvs {
			s.Stop()
		}
	})
	return fms, func(i int) { srvs[i].Stop() }
}

type clientConn struct {
	api.DispatcherClient
	cc *grpc.ClientConn
}

func (c clientConn) Close() error { return c.cc.Close() }

func busyboxTask(id string, desired api.TaskState, state api.TaskState, cmd ...string) *api.Task {
	return &api.Task{
		Id: id, ServiceId: "svc1", NodeId: "node1", Annotations: &api.Annotations{Name: "web.1." + id},
		DesiredState: desired, Status: &api.TaskStatus{State: state},
		Spec: &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox", Command: cmd,
			StopGracePeriod: durationpb.New(time.Second)}},
	}
}

func update(typ api.AssignmentsMessage_Type, appliesTo, resultsIn string, ts ...*api.Task) *api.AssignmentsMessage {
	m := &api.AssignmentsMessage{Type: typ, AppliesTo: appliesTo, ResultsIn: resultsIn}
	for _, t := range ts {
		m.Changes = append(m.Changes, &api.AssignmentChange{Task: t})
	}
	return m
}

func waitState(t *testing.T, fm *fakeManager, id string, want api.TaskState) *api.TaskStatus {
	t.Helper()
	var st *api.TaskStatus
	waitFor(t, fmt.Sprintf("task %s %v", id, want), func() bool {
		st = fm.status(id)
		return st.GetState() == want
	})
	return st
}

func taskContainer(rt Runtime, taskID string) *ContainerState {
	cs, _ := rt.List(context.Background())
	for i := range cs {
		if cs[i].TaskID == taskID {
			return &cs[i]
		}
	}
	return nil
}

func TestAgentRunsAndShutsDownTask(t *testing.T) {
	rt := newEngine(t)
	fm := startAgent(t, rt)
	run := busyboxTask("task1", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "300")
	noImage := busyboxTask("task2", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "true")
	noImage.Spec.Container.Image = "nosuch:1"
	fm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "1", run, noImage)

	st := waitState(t, fm, "task1", api.TaskState_RUNNING)
	c := taskContainer(rt, "task1")
	if c == nil || c.Status != StatusRunning || st.GetContainerStatus().GetContainerId() != c.ID {
		t.Fatalf("container %+v, reported %v; want the reported container running", c, st.GetContainerStatus())
	}
	got, _ := rt.Engine.Get(c.ID)
	for k, v := range map[string]string{LabelTaskID: "task1", LabelServiceID: "svc1", LabelNodeID: "node1"} {
		if got.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, got.Config.Labels[k], v)
		}
	}
	rej := waitState(t, fm, "task2", api.TaskState_REJECTED)
	if rej.GetErr() != "No such image: nosuch:1" {
		t.Errorf("rejected with %q, want %q", rej.GetErr(), "No such image: nosuch:1")
	}

	stop := busyboxTask("task1", api.TaskState_SHUTDOWN, api.TaskState_RUNNING, "sleep", "300")
	fm.assign <- &api.AssignmentsMessage{Type: api.AssignmentsMessage_INCREMENTAL, AppliesTo: "1", ResultsIn: "2",
		Changes: []*api.AssignmentChange{{Task: stop}}}
	waitState(t, fm, "task1", api.TaskState_SHUTDOWN)
	waitFor(t, "the container removed", func() bool { return taskContainer(rt, "task1") == nil })
	fm.mu.Lock()
	beats := fm.beats
	fm.mu.Unlock()
	if beats == 0 {
		t.Error("no heartbeat")
	}
}

func TestAgentRestartReconciles(t *testing.T) {
	rt := newEngine(t)
	ctx := context.Background()
	// What an agent that died left behind: a running container of a task
	// still assigned, and one of a task that is not any more.
	kept := busyboxTask("keep1", api.TaskState_RUNNING, api.TaskState_RUNNING, "sleep", "300")
	gone := busyboxTask("gone1", api.TaskState_RUNNING, api.TaskState_RUNNING, "sleep", "300")
	var keptC ContainerState
	for _, task := range []*api.Task{kept, gone} {
		c, err := rt.Create(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if task == kept {
			keptC = c
		}
	}
	before, _ := rt.Engine.Get(keptC.ID)

	fm := startAgent(t, rt)
	fm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "5", kept)
	waitFor(t, "the orphan removed", func() bool { return taskContainer(rt, "gone1") == nil })
	// Give the kept task's goroutine time to (wrongly) act on it.
	time.Sleep(300 * time.Millisecond)
	c := taskContainer(rt, "keep1")
	if c == nil || c.ID != keptC.ID || c.Status != StatusRunning {
		t.Fatalf("kept task's container %+v, want %s still running", c, keptC.ID)
	}
	after, _ := rt.Engine.Get(keptC.ID)
	if after.State.Pid != before.State.Pid || !after.State.StartedAt.Equal(before.State.StartedAt) {
		t.Fatalf("adopted container was restarted (pid %d -> %d)", before.State.Pid, after.State.Pid)
	}
	if st := fm.status("keep1"); st != nil && st.GetState() != api.TaskState_RUNNING {
		t.Fatalf("kept task reported %v", st.GetState())
	}
}

func TestAgentFailsOverToNextManager(t *testing.T) {
	rt := newEngine(t)
	fms, stop := startAgentN(t, rt, 2)
	task := busyboxTask("task1", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "300")
	fms[0].assign <- update(api.AssignmentsMessage_COMPLETE, "", "1", task)
	waitState(t, fms[0], "task1", api.TaskState_RUNNING)
	c := taskContainer(rt, "task1")

	// m0 dies; the agent learnt of m1 from m0's session message.
	stop(0)
	// m1 (a new leader) knows the task only as ASSIGNED: its store missed
	// the reports. The agent must keep the container and report again.
	fms[1].assign <- update(api.AssignmentsMessage_COMPLETE, "", "7", busyboxTask("task1", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "300"))
	waitState(t, fms[1], "task1", api.TaskState_RUNNING)
	waitFor(t, "heartbeats to m1", func() bool { fms[1].mu.Lock(); defer fms[1].mu.Unlock(); return fms[1].beats > 0 })
	if c2 := taskContainer(rt, "task1"); c2 == nil || c2.ID != c.ID || c2.Status != StatusRunning {
		t.Fatalf("container after failover %+v, want %s still running", c2, c.ID)
	}
}

// TestAgentCompleteSetInParts: the dispatcher splits a big COMPLETE set into
// a COMPLETE part and INCREMENTAL parts; tasks of later parts must not be
// stopped by the first, and a task in no part must be.
func TestAgentCompleteSetInParts(t *testing.T) {
	rt := newEngine(t)
	fm := startAgent(t, rt)
	fm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "1", busyboxTask("c", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "300"))
	waitState(t, fm, "c", api.TaskState_RUNNING)
	// A reconnect-style complete set in two parts: a, then b. b runs already.
	fm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "2", busyboxTask("b", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "300"))
	waitState(t, fm, "b", api.TaskState_RUNNING)
	waitFor(t, "c's container removed", func() bool { return taskContainer(rt, "c") == nil })
	b := taskContainer(rt, "b")

	fm.assign <- update(api.AssignmentsMessage_COMPLETE, "", "3.0", busyboxTask("a", api.TaskState_RUNNING, api.TaskState_ASSIGNED, "sleep", "300"))
	fm.assign <- update(api.AssignmentsMessage_INCREMENTAL, "3.0", "3", busyboxTask("b", api.TaskState_RUNNING, api.TaskState_RUNNING, "sleep", "300"))
	waitState(t, fm, "a", api.TaskState_RUNNING)
	// Longer than b's grace period: a wrong teardown would have ended it.
	time.Sleep(1500 * time.Millisecond)
	if c := taskContainer(rt, "b"); c == nil || c.ID != b.ID || c.Status != StatusRunning {
		t.Fatalf("b's container %+v after a split complete set, want %s running", c, b.ID)
	}

	// A task leaving the set (REMOVE) loses its container.
	fm.assign <- &api.AssignmentsMessage{Type: api.AssignmentsMessage_INCREMENTAL, AppliesTo: "3", ResultsIn: "4",
		Changes: []*api.AssignmentChange{{Task: &api.Task{Id: "a"}, Action: api.AssignmentChange_REMOVE}}}
	waitFor(t, "a's container removed", func() bool { return taskContainer(rt, "a") == nil })
}
