package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/initsig"
	"github.com/shoal-project/shoal/containerd/inroot"
	"github.com/shoal-project/shoal/containerd/oci"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

// Create makes a container from cfg: its record, its rootfs (one overlay over
// the image's shared layers) and its bundle directory. On any error nothing
// of it remains.
func (e *Engine) Create(ctx context.Context, name string, cfg Config) (c Container, err error) {
	img, err := e.opts.Images.Get(cfg.Image)
	if err != nil {
		return Container{}, err
	}
	if name != "" && !namePattern().MatchString(name) {
		return Container{}, fmt.Errorf("%w: Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", ErrInvalidArgument, name)
	}
	for _, b := range cfg.Binds {
		if _, _, _, err := ParseBind(b); err != nil {
			return Container{}, err
		}
	}
	if cfg.NetworkMode == "" || cfg.NetworkMode == "default" {
		cfg.NetworkMode = "bridge"
	}
	// Other modes are user networks, which the daemon has checked.
	if strings.HasPrefix(cfg.NetworkMode, "container:") {
		return Container{}, fmt.Errorf("%w: network mode %s is not supported", ErrInvalidArgument, cfg.NetworkMode)
	}
	if ref, ok := strings.CutPrefix(cfg.PidMode, "container:"); ok && ref != "" {
		// Kept by ID: a rename of the other container does not change
		// whose namespace this one joins.
		other, err := e.Get(ref)
		if err != nil {
			return Container{}, err
		}
		cfg.PidMode = "container:" + other.ID
	}
	if l := img.Config.Config.Labels; len(l) > 0 {
		// The image's labels are the container's too, the given ones
		// winning (dockerd merges them; ps --filter label= finds them).
		labels := maps.Clone(l)
		maps.Copy(labels, cfg.Labels)
		cfg.Labels = labels
	}
	if err := cfg.RestartPolicy.Validate(); err != nil {
		return Container{}, err
	}
	if cfg.RestartPolicy.Enabled() && cfg.AutoRemove {
		return Container{}, fmt.Errorf("%w: can't create 'AutoRemove' container with restart policy", ErrInvalidArgument)
	}
	if err := ValidateHealthcheck(cfg.Healthcheck); err != nil {
		return Container{}, err
	}
	if err := CheckInitPids(cfg.Init, cfg.PidsLimit); err != nil {
		return Container{}, err
	}
	cfg.Healthcheck = mergeHealthcheck(cfg.Healthcheck, img.Healthcheck)
	args := processArgs(cfg, img.Config.Config)
	if len(args) == 0 {
		return Container{}, fmt.Errorf("%w: No command specified", ErrInvalidArgument)
	}
	id := newID()
	if name == "" {
		name = e.generateName()
	}
	c = Container{
		ID: id, Name: "/" + strings.TrimPrefix(name, "/"), Created: time.Now().UTC(), ImageID: img.ID,
		Path: args[0], Args: args[1:], Config: cfg,
		State: State{Status: "created"},
	}
	// What can be checked without the rootfs fails the create, as with
	// Docker: a relative working directory, a bad environment entry, bad
	// resources. A user name is resolved at start, in the container's /etc/passwd.
	probe, probeImg := c, img.Config.Config
	probe.Config.User, probeImg.User = "", ""
	if _, err := buildSpec(probe, probeImg, nil, e.rt.CgroupRoot); err != nil {
		return Container{}, err
	}
	// Reserve the name under the lock: two creates with one name race here.
	e.mu.Lock()
	for _, r := range e.records {
		if r.c.Name == c.Name && !r.removed {
			e.mu.Unlock()
			return Container{}, fmt.Errorf("%w: Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", ErrConflict, c.Name, r.c.ID)
		}
	}
	rec := &record{c: c, changed: make(chan struct{}), removed: true} // invisible until complete
	e.records[id] = rec
	e.mu.Unlock()
	defer func() {
		if err != nil {
			e.mu.Lock()
			delete(e.records, id)
			e.mu.Unlock()
			e.cleanup(id)
		}
	}()
	for _, d := range []string{e.containerDir(id), filepath.Join(e.bundleDir(id), "rootfs")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return Container{}, fmt.Errorf("create container: %w", err)
		}
	}
	// A --rm container's files are written without waiting for the disk:
	// it is removed at its end, and after a machine crash Open removes it.
	prepare := e.opts.Images.PrepareRootfs
	if cfg.AutoRemove {
		prepare = e.opts.Images.PrepareEphemeralRootfs
	}
	if _, err := prepare(ctx, id, img); err != nil {
		return Container{}, fmt.Errorf("create container rootfs: %w", err)
	}
	if err := e.save(c, !cfg.AutoRemove); err != nil {
		return Container{}, err
	}
	e.mu.Lock()
	rec.removed = false
	e.mu.Unlock()
	e.emit("create", c, nil)
	return c, nil
}

func (e *Engine) generateName() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 0; ; i++ {
		n := "/" + randomName(i > 5)
		taken := false
		for _, r := range e.records {
			taken = taken || r.c.Name == n
		}
		if !taken {
			return n[1:]
		}
	}
}

// mountRootfs mounts the container's overlay at its bundle's rootfs, in the
// host's namespace, if it is not mounted: for a container that does not
// run (cp, export, a volume's copy-up). It stays mounted until the
// container is removed or started (specWithRootfs).
func (e *Engine) mountRootfs(c Container) (string, error) {
	id := c.ID
	target := filepath.Join(e.bundleDir(id), "rootfs")
	if isMountpoint(target) {
		return target, nil
	}
	rfs, err := e.opts.Images.RootfsOf(id)
	if err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", id[:12], err)
	}
	if err := os.MkdirAll(target, 0o711); err != nil {
		return "", err
	}
	// A --rm container's changes go with it: nothing of them need reach
	// the disk (and the unmount at its removal then syncs nothing).
	rfs.Volatile = c.Config.AutoRemove
	if err := rfs.Mount(target); err != nil {
		return "", fmt.Errorf("mount rootfs of %s: %w", id[:12], err)
	}
	return target, nil
}

// specWithRootfs builds the container's spec with its rootfs left to the
// runtime, which mounts it in the container's own mount namespace
// (runtime.RootfsOverlayAnnotation): no mount of it in the host's.
func (e *Engine) specWithRootfs(c Container, img ocispec.ImageConfig) (*specs.Spec, error) {
	id := c.ID
	target := filepath.Join(e.bundleDir(id), "rootfs")
	// The host's instance (a cp or a volume's copy-up of the container
	// while it did not run) goes first: one overlay per upper directory.
	unmountRootfs(e.bundleDir(id))
	if err := os.MkdirAll(target, 0o711); err != nil {
		return nil, err
	}
	rfs, err := e.opts.Images.RootfsOf(id)
	if err != nil {
		return nil, fmt.Errorf("rootfs of %s: %w", id[:12], err)
	}
	// A --rm container's changes go with it: nothing of them need reach
	// the disk.
	rfs.Volatile = c.Config.AutoRemove
	ov, err := rfs.Overlay()
	if err != nil {
		return nil, err
	}
	db, err := e.userDBOf(id, rfs, ov)
	if err != nil {
		return nil, err
	}
	spec, err := buildSpec(c, img, db, e.rt.CgroupRoot)
	if err != nil {
		return nil, err
	}
	// And the volatile mark that instance left is cleared for the
	// runtime's.
	if ov, err = rfs.Overlay(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(ov)
	if err != nil {
		return nil, err
	}
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[runtime.RootfsOverlayAnnotation] = string(b)
	return spec, nil
}

// userDBOf reads the container's /etc/passwd and /etc/group (its user, its
// groups and HOME are looked up there; root's too, whose supplementary
// groups are those /etc/group lists it in: alpine's bin, daemon, sys,
// adm...) through an instance of its overlay that is gone before the
// runtime makes the container's. While the container's upper directory is
// empty, as every new container's is, the files are its image's, read
// once per layer stack (userDBCache).
func (e *Engine) userDBOf(id string, rfs images.Rootfs, ov runtime.Overlay) (*userDB, error) {
	pristine := dirEmpty(rfs.Upper)
	if pristine {
		if db := e.userDBs.get(rfs.Lower); db != nil {
			return db, nil
		}
	}
	viewMount, err := ov.Detached()
	if err != nil {
		return nil, fmt.Errorf("rootfs of %s: %w", id[:12], err)
	}
	db, err := readUserDB(inroot.FdPath(int(viewMount.Fd()), ""))
	viewMount.Close()
	if err != nil {
		return nil, err
	}
	if pristine {
		e.userDBs.put(rfs.Lower, db)
	}
	return db, nil
}

func isMountpoint(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func unmountRootfs(bundle string) {
	target := filepath.Join(bundle, "rootfs")
	for i := 0; i < 10 && isMountpoint(target); i++ {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			break
		}
	}
}

func shimSocket(execRoot, id string) string {
	return shim.SocketPath(filepath.Join(execRoot, "shim", id))
}

func readExit(execRoot, id string) (shim.Exit, error) {
	return shim.ReadExit(filepath.Join(execRoot, "shim", id))
}

// ExecError is a start that failed because the command cannot be run; Code is
// 127 (not found) or 126 (not executable), as Docker's exit codes.
type ExecError struct {
	Code int
	Msg  string
}

func (e *ExecError) Error() string { return e.Msg }

// Start starts a created or exited container under a new shim.
func (e *Engine) Start(ctx context.Context, idOrName string) error {
	r, err := e.lockOp(idOrName)
	if err != nil {
		return err
	}
	defer r.opMu.Unlock()
	e.mu.Lock()
	if r.c.State.Running {
		e.mu.Unlock()
		return ErrNotModified
	}
	policyRestart, ok := e.takeRestartLocked(ctx, r)
	if !ok {
		e.mu.Unlock()
		return ErrNotModified
	}
	c := r.c
	pending := r.pending
	r.pending = nil
	e.mu.Unlock()
	id := c.ID
	startErr := func(err error) error {
		for _, a := range pending {
			a.fail(err)
		}
		return err
	}

	img, err := e.opts.Images.Get(c.ImageID)
	if err != nil {
		return startErr(fmt.Errorf("image of %s: %w", id[:12], err))
	}
	spec, err := e.specWithRootfs(c, img.Config.Config)
	if err != nil {
		return startErr(err)
	}
	if err := e.withEtcFiles(spec, c); err != nil {
		return startErr(err)
	}
	if c.Config.Init {
		if err := e.withInit(spec); err != nil {
			return startErr(err)
		}
	}
	if ref, ok := strings.CutPrefix(c.Config.PidMode, "container:"); ok {
		path, err := e.pidNamespaceOf(ref)
		if err != nil {
			return startErr(err)
		}
		if err := oci.WithNamespacePath(spec, specs.PIDNamespace, path); err != nil {
			return startErr(fmt.Errorf("%w: %v", ErrInvalidArgument, err))
		}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return startErr(err)
	}
	if err := os.WriteFile(filepath.Join(e.bundleDir(id), "config.json"), b, 0o600); err != nil {
		return startErr(fmt.Errorf("write bundle: %w", err))
	}
	// The seccomp policy compiled here, once per distinct policy, rather
	// than by the runtime at every start.
	if err := runtime.WriteBundleSeccomp(e.bundleDir(id), b, spec.Linux.Seccomp); err != nil {
		return startErr(fmt.Errorf("write bundle: %w", err))
	}
	sdir := e.shimDir(id)
	os.RemoveAll(sdir)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return startErr(err)
	}
	pid, shimPid, wait, err := e.startShim(ctx, c, pending)
	if err != nil {
		// Their streams end with the start, as dockerd's do; left
		// pending, they would wait for a start that was already taken.
		startErr(err)
		msg := err.Error()
		code := 0
		var ee *ExecError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		_, _ = e.update(id, func(c *Container) {
			c.State.Error = msg
			if code != 0 {
				c.State.ExitCode = code
			}
		})
		return err
	}
	started, err := e.updateState(id, func(c *Container) {
		health := c.State.Health
		c.State = State{Status: "running", Running: true, Pid: pid, ShimPid: shimPid, StartedAt: time.Now().UTC()}
		if c.Config.Healthcheck != nil {
			h := Health{Status: HealthStarting}
			if health != nil {
				h.Log = health.Log
			}
			c.State.Health = &h
		}
		if policyRestart {
			c.RestartCount++
		} else {
			c.RestartCount = 0
		}
	})
	// The container runs whatever the save did: its exit must be recorded,
	// or it stays "running" in memory for good and Stop never sees it end.
	e.monitor(id, wait)
	if err != nil {
		// Not saved (a full disk): a start that fails leaves nothing
		// running, and a daemon restarted on the old record would not
		// know of this process.
		_ = e.rt.Kill(id, unix.SIGKILL, true)
		return err
	}
	e.emit("start", started, nil)
	if hc := started.Config.Healthcheck; hc != nil {
		e.watchHealth(id, started.State.StartedAt, *hc)
	}
	return nil
}

// startShim hands the container to a shim, with the attach streams that wait for the
// start and the connection that waits for its exit, and returns the container's pid.
func (e *Engine) startShim(ctx context.Context, c Container, pending []*attachReq) (int, int, net.Conn, error) {
	id := c.ID
	if len(pending) > shim.MaxClients-1 {
		return 0, 0, nil, fmt.Errorf("%w: %d clients attached to %s before its start, at most %d", ErrConflict, len(pending), id[:12], shim.MaxClients-1)
	}
	opts := shim.Options{
		ID: id, Bundle: e.bundleDir(id), StateDir: e.shimDir(id),
		RuntimeRoot: filepath.Join(e.opts.ExecRoot, "runtime"), CgroupParent: cgroupParent(e.opts.CgroupParent),
		LogPath: e.LogPath(id), Log: c.Config.Log, Stdin: c.Config.OpenStdin, StdinOnce: c.Config.StdinOnce,
		Tty: c.Config.Tty, ConsoleHeight: c.Config.ConsoleSize[0], ConsoleWidth: c.Config.ConsoleSize[1],
	}
	// The exit is asked for before the start: a short-lived container may
	// finish, and its shim go, before a later request could reach it.
	reqs := []shim.Request{{Wait: true}}
	for _, a := range pending {
		reqs = append(reqs, shim.Request{Attach: true, Stdin: a.stdin != nil})
	}
	conns, theirs, err := shimClients(reqs)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("start shim: %w", err)
	}
	// The shim has its own copies once the request is sent.
	defer closeFiles(theirs)
	started := false
	defer func() {
		if !started {
			for _, c := range conns {
				c.Close()
			}
		}
	}()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return 0, 0, nil, err
	}
	defer statusR.Close()
	logf, err := os.OpenFile(filepath.Join(e.shimDir(id), "shim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		statusW.Close()
		return 0, 0, nil, err
	}
	opts.Clients = len(theirs)
	shimPid, err := e.sendToShim(opts, statusW, logf, theirs)
	// Ours closed, the shim's end alone keeps the pipe open: EOF if it dies.
	statusW.Close()
	logf.Close()
	if err != nil {
		return 0, 0, nil, err
	}
	var st shim.Status
	if err := json.NewDecoder(statusR).Decode(&st); err != nil || st.Pid == 0 {
		return 0, 0, nil, shimError(st, err, c)
	}
	started = true
	// Registered with the shim before the start: nothing of the output is missed.
	for i, a := range pending {
		go e.pumpConn(a, conns[i+1])
	}
	return st.Pid, shimPid, conns[0], nil
}

// shimClients makes a connected socket pair per request, with the request
// already written into the engine's end: the engine's ends, and the ends
// for the shim.
func shimClients(reqs []shim.Request) ([]net.Conn, []*os.File, error) {
	var ours []net.Conn
	var theirs []*os.File
	fail := func(err error) ([]net.Conn, []*os.File, error) {
		for _, c := range ours {
			c.Close()
		}
		closeFiles(theirs)
		return nil, nil, err
	}
	for _, req := range reqs {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("client socket: %w", err))
		}
		f := os.NewFile(uintptr(fds[0]), "shim client")
		theirs = append(theirs, os.NewFile(uintptr(fds[1]), "shim client"))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("client socket: %w", err))
		}
		ours = append(ours, c)
		// A line of a few dozen bytes: the socket's buffer takes it at once.
		if err := json.NewEncoder(c).Encode(req); err != nil {
			return fail(fmt.Errorf("client request: %w", err))
		}
	}
	return ours, theirs, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func shimError(st shim.Status, err error, c Container) error {
	switch st.Kind {
	case "notfound":
		return &ExecError{Code: 127, Msg: fmt.Sprintf("failed to create task for container: exec: %q: executable file not found in $PATH: unknown", c.Path)}
	case "permission":
		return &ExecError{Code: 126, Msg: fmt.Sprintf("failed to create task for container: exec: %q: permission denied: unknown", c.Path)}
	}
	if st.Error != "" {
		return fmt.Errorf("failed to create task for container: %s", st.Error)
	}
	return fmt.Errorf("shim of %s ended during start: %v", c.ID[:12], err)
}

// startMonitor waits, in a goroutine, for the shim of a running container to
// report the exit.
func (e *Engine) startMonitor(id string) error {
	conn, err := e.dialWait(id)
	if err != nil {
		return err
	}
	e.monitor(id, conn)
	return nil
}

// dialWait opens a wait request to a container's shim.
func (e *Engine) dialWait(id string) (net.Conn, error) {
	conn, err := shim.Dial(e.shimDir(id))
	if err != nil {
		return nil, err
	}
	if err := json.NewEncoder(conn).Encode(shim.Request{Wait: true}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// monitor reads the exit from a wait connection, in a goroutine, and records it.
func (e *Engine) monitor(id string, conn net.Conn) {
	go func() {
		defer conn.Close()
		// The engine's end unblocks the read; the next daemon re-adopts.
		stop := context.AfterFunc(e.ctx, func() { conn.Close() })
		defer stop()
		var ex shim.Exit
		if err := json.NewDecoder(conn).Decode(&ex); err != nil {
			if e.ctx.Err() != nil {
				return // the daemon is stopping; the next one re-adopts
			}
			// The shim went away without answering: its record is the truth.
			if ex, err = readExit(e.opts.ExecRoot, id); err != nil {
				// Killed without a word: its container, now unsupervised
				// (no logs, no exit code), is ended with it.
				_ = e.rt.Delete(context.Background(), id, true)
				ex = shim.Exit{ExitCode: 137, FinishedAt: time.Now().UTC(), Error: "container's shim is gone"}
			}
		}
		e.setExited(id, ex)
	}()
}

func (e *Engine) setExited(id string, ex shim.Exit) {
	// The shim told the exit once the container's processes were reaped
	// and its cgroup and runtime state deleted: nothing of it runs now.
	// Its directory (exit.json) stays until the next Start or the Remove.
	e.mu.Lock()
	autoRemove := false
	if r, ok := e.records[id]; ok {
		autoRemove = r.c.Config.AutoRemove
	}
	e.mu.Unlock()
	e.stopHealth(id)
	var delay time.Duration
	var restart chan struct{}
	// The exit of a --rm container is not written at all, only broadcast:
	// the record goes with the removal below, and a daemon that starts
	// before that removal is done removes the container too (Open: the
	// record says running, its shim is gone: setExited, then Remove).
	mode := saveDurable
	if autoRemove {
		mode = saveNone
	}
	c, err := e.modify(id, mode, func(c *Container) {
		c.State.Running = false
		c.State.Paused = false
		c.State.Status = "exited"
		c.State.Pid = 0
		c.State.ShimPid = 0
		c.State.ExitCode = ex.ExitCode
		c.State.OOMKilled = ex.OOMKilled
		c.State.FinishedAt = ex.FinishedAt
		c.State.Error = ex.Error
		// Published before waiters wake: a stop returns after its die.
		if ex.OOMKilled {
			e.emit("oom", *c, nil)
		}
		e.emit("die", *c, map[string]string{"exitCode": strconv.Itoa(ex.ExitCode)})
		if shouldRestart(c.Config.RestartPolicy, ex.ExitCode, c.State.StoppedByUser, c.RestartCount, false) {
			c.State.Restarting, c.State.Status = true, "restarting"
			// update calls this with e.mu held: the record is at hand.
			delay, restart = e.armRestartLocked(e.records[id], c.State.FinishedAt.Sub(c.State.StartedAt))
		}
	})
	e.forgetPause(id)
	if err != nil {
		return
	}
	if restart != nil {
		e.runRestart(id, delay, restart)
	}
	if c.Config.AutoRemove {
		_ = e.Remove(context.Background(), id, true)
	}
}

// Kill sends sig to the container's init.
func (e *Engine) Kill(idOrName string, sig unix.Signal) error {
	c, err := e.Get(idOrName)
	if err != nil {
		return err
	}
	if !c.State.Running {
		if e.cancelRestart(c.ID) {
			return nil // killed while it waited to restart: it stays down
		}
		return fmt.Errorf("%w: Cannot kill container: %s: Container %s is not running", ErrConflict, idOrName, c.ID)
	}
	stopSig := unix.SIGTERM
	if s, err := ParseSignal(c.Config.StopSignal); err == nil && c.Config.StopSignal != "" {
		stopSig = s
	}
	if sig == unix.SIGKILL || sig == stopSig {
		// As dockerd: a kill meant to end the container cancels its restart policy.
		_, _ = e.update(c.ID, func(c *Container) { c.State.StoppedByUser = true })
	}
	if sig != unix.SIGKILL {
		awaitInit(c)
	}
	if err := e.rt.Kill(c.ID, sig, false); err != nil {
		if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrState) {
			// It exited a moment ago; its monitor is recording that.
			return fmt.Errorf("%w: Cannot kill container: %s: Container %s is not running", ErrConflict, idOrName, c.ID)
		}
		return fmt.Errorf("kill %s: %w", c.ID[:12], err)
	}
	e.emit("kill", c, map[string]string{"signal": strconv.Itoa(int(sig))})
	if sig == unix.SIGKILL {
		e.thawForKill(c)
		// As dockerd: a SIGKILL returns once the exit is recorded, so that
		// inspect right after kill shows the exit code (137), not 0.
		ctx, cancel := context.WithTimeout(context.Background(), killWait)
		defer cancel()
		_, _ = e.Wait(ctx, c.ID, WaitNotRunning, nil)
	}
	return nil
}

// awaitInit waits, at most initReadyWait, until the --init of c catches
// signals (initsig.ReadyName): a container started a moment ago may still
// be starting its init, which a signal would end with exit code 2 instead
// of passing it on. Containers without --init, and an init that is gone,
// do not wait.
func awaitInit(c Container) {
	if !c.Config.Init || c.State.Pid <= 0 {
		return
	}
	comm := "/proc/" + strconv.Itoa(c.State.Pid) + "/comm"
	for end := time.Now().Add(initReadyWait); time.Now().Before(end); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(comm)
		if err != nil || strings.TrimSpace(string(b)) == initsig.ReadyName {
			return
		}
	}
}

// initReadyWait bounds awaitInit: the init's Go start takes milliseconds.
const initReadyWait = time.Second

// killWait bounds how long kill waits for a SIGKILLed container's exit.
const killWait = 10 * time.Second

// Stop sends the stop signal, waits timeout (nil: the container's, else 10 s)
// and then kills every process of the container.
func (e *Engine) Stop(ctx context.Context, idOrName string, timeout *int) error {
	c, stopped, err := e.halt(ctx, idOrName, timeout)
	if stopped {
		e.emit("stop", c, nil)
	}
	return err
}

// halt is Stop without its "stop" event (rm -f's kill, as dockerd's, has
// none); stopped says whether it ended a running container.
func (e *Engine) halt(ctx context.Context, idOrName string, timeout *int) (c Container, stopped bool, err error) {
	c, err = e.Get(idOrName)
	if err != nil {
		return c, false, err
	}
	if !c.State.Running {
		if e.cancelRestart(c.ID) {
			return c, false, nil // stopped while it waited to restart
		}
		if !c.State.Restarting {
			return c, false, ErrNotModified
		}
		// Its restart is starting it: let that finish, then stop it.
		if r, err := e.lockOp(c.ID); err == nil {
			r.opMu.Unlock()
		}
		if c, err = e.Get(c.ID); err != nil {
			return c, false, err
		}
		if !c.State.Running {
			return c, false, ErrNotModified
		}
	}
	t := 10
	if c.Config.StopTimeout != nil {
		t = *c.Config.StopTimeout
	}
	if timeout != nil {
		t = *timeout
	}
	sig := unix.SIGTERM
	if c.Config.StopSignal != "" {
		if s, err := ParseSignal(c.Config.StopSignal); err == nil {
			sig = s
		}
	}
	_, _ = e.update(c.ID, func(c *Container) { c.State.StoppedByUser = true })
	if t != 0 {
		awaitInit(c)
	}
	if t != 0 && e.rt.Kill(c.ID, sig, false) == nil {
		e.emit("kill", c, map[string]string{"signal": strconv.Itoa(int(sig))})
	}
	wctx, cancel := context.WithTimeout(ctx, time.Duration(t)*time.Second)
	_, err = e.Wait(wctx, c.ID, WaitNotRunning, nil)
	cancel()
	if err == nil {
		return c, true, nil
	}
	// Not found: it has just exited, and its monitor is recording that.
	if err := e.rt.Kill(c.ID, unix.SIGKILL, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return c, false, fmt.Errorf("stop %s: %w", c.ID[:12], err)
	}
	e.emit("kill", c, map[string]string{"signal": strconv.Itoa(int(unix.SIGKILL))})
	e.thawForKill(c)
	wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.Wait(wctx, c.ID, WaitNotRunning, nil); err != nil {
		return c, false, fmt.Errorf("stop %s: container did not exit after SIGKILL: %w", c.ID[:12], err)
	}
	return c, true, nil
}

// Remove deletes a container; a running one only with force (it is killed).
func (e *Engine) Remove(ctx context.Context, idOrName string, force bool) error {
	r, err := e.lockOp(idOrName)
	if err != nil {
		return err
	}
	if err := e.removeLocked(ctx, r, idOrName, force); err != nil {
		r.opMu.Unlock()
		return err
	}
	r.opMu.Unlock()
	if e.opts.Released != nil {
		e.opts.Released(r.c.ID)
	}
	e.emit("destroy", r.c, nil)
	return nil
}

// removeLocked is Remove under the record's operation lock: no start can
// begin or be half-way while the container is stopped and its files go.
func (e *Engine) removeLocked(ctx context.Context, r *record, idOrName string, force bool) error {
	e.mu.Lock()
	c := r.c
	e.mu.Unlock()
	if !force {
		// dockerd's words; it counts a container waiting to be restarted
		// as running too (its restart would bring the container back).
		switch {
		case c.State.Running && c.State.Paused:
			return fmt.Errorf("%w: You cannot remove a paused container %s. Unpause and then stop the container before attempting removal or force remove", ErrConflict, c.ID)
		case c.State.Running:
			return fmt.Errorf("%w: You cannot remove a running container %s. Stop the container before attempting removal or force remove", ErrConflict, c.ID)
		case c.State.Restarting:
			return fmt.Errorf("%w: You cannot remove a restarting container %s. Stop the container before attempting removal or force remove", ErrConflict, c.ID)
		}
	}
	if c.State.Running {
		zero := 0
		if _, _, err := e.halt(ctx, c.ID, &zero); err != nil && !errors.Is(err, ErrNotModified) {
			return err
		}
	}
	// After saveMu no update can write the record again: the files can go.
	r.saveMu.Lock()
	e.mu.Lock()
	if r.removed {
		e.mu.Unlock()
		r.saveMu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, idOrName)
	}
	r.removed = true
	e.cancelRestartLocked(r)
	if r.healthCancel != nil {
		r.healthCancel()
	}
	e.mu.Unlock()
	r.saveMu.Unlock()
	trash := e.detach(c.ID)
	// Waiters for "removed" wake only now, when nothing of it is left
	// under its name; its files' deletion follows.
	e.mu.Lock()
	delete(e.records, c.ID)
	r.gone = true
	close(r.changed)
	r.changed = make(chan struct{})
	e.mu.Unlock()
	e.discard(trash)
	return nil
}

// ParseSignal parses a signal name (KILL, SIGKILL) or number.
func ParseSignal(s string) (unix.Signal, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("%w: invalid signal: %s", ErrInvalidArgument, s)
		}
		return unix.Signal(n), nil
	}
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	if sig := unix.SignalNum(s); sig != 0 {
		return sig, nil
	}
	// Real-time signals by offset, as Docker names them: RTMIN, RTMIN+3, RTMAX-1.
	base, off := s, 0
	for _, op := range []string{"+", "-"} {
		if b, o, ok := strings.Cut(s, op); ok {
			n, err := strconv.Atoi(o)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%w: invalid signal: %s", ErrInvalidArgument, s)
			}
			base, off = b, n
			if op == "-" {
				off = -n
			}
		}
	}
	sig := 0
	switch base {
	case "SIGRTMIN":
		sig = 34 + off
	case "SIGRTMAX":
		sig = 64 + off
	}
	if sig >= 34 && sig <= 64 {
		return unix.Signal(sig), nil
	}
	return 0, fmt.Errorf("%w: invalid signal: %s", ErrInvalidArgument, s)
}
