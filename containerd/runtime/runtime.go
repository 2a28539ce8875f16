package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// Errors returned (wrapped) by the runtime.
var (
	ErrNotFound = errors.New("container does not exist")
	ErrExists   = errors.New("container already exists")
	ErrInvalid  = errors.New("invalid argument")
	// ErrState is returned when an operation does not fit the container's
	// status (start of a running container, delete of a running one...).
	ErrState = errors.New("container is not in the right state")
	// ErrExecNotFound: process.args[0] does not exist in the container
	// (Docker reports exit code 127).
	ErrExecNotFound = errors.New("executable file not found")
	// ErrExecPermission: args[0] exists but cannot be executed (exit 126).
	ErrExecPermission = errors.New("permission denied")
)

// DefaultRoot is where `shoal runtime` keeps container state unless --root
// says otherwise.
const DefaultRoot = "/run/shoal/runtime"

// Runtime manages the containers whose state lives under one directory.
type Runtime struct {
	root string

	// CgroupRoot is where the cgroup filesystems are mounted.
	CgroupRoot string
	// CgroupParent holds the cgroups of containers whose cgroupsPath is
	// empty (<parent>/<id>) or relative (<parent>/<path>).
	CgroupParent string
	// InitArgs are the arguments (after argv[0]) that make the
	// re-executed binary call InitMain.
	InitArgs []string
	// Self returns the binary to re-execute as the Go init; nil means a
	// sealed view of this process's own binary (SealedSelf). It is called
	// only when a container starts through the Go init, so that a process
	// that never needs one never pays for it (a sealed copy of the shim
	// binary costs `shoal runtime run` milliseconds). Whatever it names must
	// not be writable by anyone (CVE-2019-5736).
	Self func() (string, error)

	mu    sync.Mutex
	procs map[string]*child // inits and execs this Runtime started; mu guards it
}

// child is a process this Runtime started and reaps.
type child struct {
	done      chan struct{}
	status    int    // valid after done is closed: exit code, or 128+signal
	startTime uint64 // /proc/<pid>/stat field 22, read while the init waits for its config
}

// New returns a Runtime keeping state under stateRoot (created on first use,
// mode 0700).
func New(stateRoot string) *Runtime {
	return &Runtime{
		root:         stateRoot,
		CgroupRoot:   cgroups.DefaultRoot,
		CgroupParent: "/shoal",
		InitArgs:     []string{"init"},
		procs:        map[string]*child{},
	}
}

// Stdio are the standard streams of a container process. Nil means
// /dev/null.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOptions tune Create.
type CreateOptions struct {
	Stdin, Stdout, Stderr *os.File
	// PidFile, if set, receives the init's pid (host namespace).
	PidFile string
	// NoPivot uses MS_MOVE+chroot instead of pivot_root (for a rootfs on
	// ramfs, where pivot_root fails).
	NoPivot bool
}

// validateID accepts [A-Za-z0-9][A-Za-z0-9_.+-]{0,127}: an id is a path
// component under the state root. (No regexp: its compilation at package
// init would run in every container init.)
func validateID(id string) error {
	ok := len(id) > 0 && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		ok = alnum || i > 0 && (c == '_' || c == '.' || c == '+' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%w: container id %q (letters, digits, _ . + -)", ErrInvalid, id)
	}
	return nil
}

// Create sets up the container described by bundle/config.json and leaves
// its init waiting for Start: namespaces, cgroup, mounts and privileges are
// in place, args[0] has been found, but the process has not been executed.
// On error nothing is left behind.
func (r *Runtime) Create(ctx context.Context, id, bundle string, opts CreateOptions) error {
	_, _, err := r.create(ctx, id, bundle, opts, modeCreate, false)
	return err
}

// CreateConsole is Create for a process.terminal container whose terminal
// the runtime allocates itself, on the container's own devpts (the spec
// must mount one on /dev/pts), as runc does: the process finds it as
// /dev/pts/0, which tty(1) names, and as /dev/console. A host pty handed
// over as Stdin would be a file the container cannot name. opts.Stdin,
// Stdout and Stderr are not used. It returns the terminal's master, which
// the caller owns.
func (r *Runtime) CreateConsole(ctx context.Context, id, bundle string, opts CreateOptions) (*os.File, error) {
	_, console, err := r.create(ctx, id, bundle, opts, modeCreate, true)
	return console, err
}

// Run creates and starts the container at once (no exec fifo), waits for it
// to exit, deletes it and returns its exit code (128+N for signal N).
func (r *Runtime) Run(ctx context.Context, id, bundle string, opts CreateOptions) (int, error) {
	mode := modeRun
	if spec, _, err := loadSpec(bundle); err == nil && spec.Hooks != nil {
		// Hooks run between create and start: pause the init on the fifo.
		mode = modeCreate
	}
	c, _, err := r.create(ctx, id, bundle, opts, mode, false)
	if err != nil {
		return -1, err
	}
	if mode == modeCreate {
		if err := r.Start(ctx, id); err != nil {
			_ = r.Delete(context.WithoutCancel(ctx), id, true)
			return -1, err
		}
	}
	t := newTimer()
	var code int
	select {
	case <-c.done:
		code = c.status
	case <-ctx.Done():
		_ = r.Kill(id, unix.SIGKILL, true)
		<-c.done
		code = c.status
	}
	t.mark("wait")
	if err := r.Delete(context.WithoutCancel(ctx), id, true); err != nil {
		return code, err
	}
	t.mark("delete")
	t.report(id)
	return code, ctx.Err()
}

// Wait waits for the init of a container created by this Runtime value and
// returns its exit code (128+N for a signal). It is an error for containers
// created by another process (they are not our children).
func (r *Runtime) Wait(ctx context.Context, id string) (int, error) {
	r.mu.Lock()
	c := r.procs[id]
	r.mu.Unlock()
	if c == nil {
		return -1, fmt.Errorf("wait %s: %w (not started by this process)", id, ErrNotFound)
	}
	select {
	case <-c.done:
		return c.status, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

const (
	modeCreate = "create"
	modeRun    = "run"
	modeExec   = "exec"
)

func (r *Runtime) cgroupPath(id string, spec *specs.Spec) string {
	p := ""
	if spec.Linux != nil {
		p = spec.Linux.CgroupsPath
	}
	switch {
	case p == "":
		return filepath.Join("/", r.CgroupParent, id)
	case filepath.IsAbs(p):
		return filepath.Clean(p)
	}
	return filepath.Join("/", r.CgroupParent, p)
}

// loadSpec reads bundle/config.json; it returns its bytes too.
func loadSpec(bundle string) (*specs.Spec, []byte, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: bundle: %v", ErrInvalid, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("%w: config.json: %v", ErrInvalid, err)
	}
	return &s, b, nil
}

func validateSpec(s *specs.Spec) error {
	if s.Process == nil || len(s.Process.Args) == 0 {
		return fmt.Errorf("%w: process.args is empty", ErrInvalid)
	}
	if s.Root == nil || s.Root.Path == "" {
		return fmt.Errorf("%w: root.path is empty", ErrInvalid)
	}
	if s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd) {
		return fmt.Errorf("%w: process.cwd %q is not absolute", ErrInvalid, s.Process.Cwd)
	}
	seen := map[string]bool{}
	for _, rl := range s.Process.Rlimits {
		if _, ok := rlimitByName[rl.Type]; !ok {
			return fmt.Errorf("%w: rlimit %q", ErrInvalid, rl.Type)
		}
		if seen[rl.Type] {
			return fmt.Errorf("%w: rlimit %s given twice", ErrInvalid, rl.Type)
		}
		seen[rl.Type] = true
	}
	if err := validateCaps(s.Process.Capabilities); err != nil {
		return err
	}
	if s.Linux == nil {
		return fmt.Errorf("%w: linux section missing", ErrInvalid)
	}
	types := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range s.Linux.Namespaces {
		if _, ok := nsFlags[ns.Type]; !ok {
			return fmt.Errorf("%w: namespace type %q not supported", ErrInvalid, ns.Type)
		}
		if types[ns.Type] {
			return fmt.Errorf("%w: namespace %s listed twice", ErrInvalid, ns.Type)
		}
		types[ns.Type] = true
	}
	if !types[specs.MountNamespace] {
		return fmt.Errorf("%w: a mount namespace is required", ErrInvalid)
	}
	if (s.Hostname != "" || s.Domainname != "") && !types[specs.UTSNamespace] {
		return fmt.Errorf("%w: hostname needs a uts namespace", ErrInvalid)
	}
	return nil
}

// validateCaps refuses capability names the kernel interface does not know
// (a known capability the runtime cannot grant only warns, in the init).
func validateCaps(c *specs.LinuxCapabilities) error {
	if c == nil {
		return nil
	}
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
		for _, n := range set {
			if _, ok := capByName[n]; !ok {
				return fmt.Errorf("%w: unknown capability %q", ErrInvalid, n)
			}
		}
	}
	return nil
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
}

func (r *Runtime) create(ctx context.Context, id, bundle string, opts CreateOptions, mode string, newConsole bool) (c *child, console *os.File, err error) {
	t := newTimer()
	if err := validateID(id); err != nil {
		return nil, nil, err
	}
	if bundle == "" {
		bundle = "."
	}
	bundle, err = filepath.Abs(bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: bundle: %v", ErrInvalid, err)
	}
	spec, raw, err := loadSpec(bundle)
	if err != nil {
		return nil, nil, err
	}
	if err := validateSpec(spec); err != nil {
		return nil, nil, err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return nil, nil, fmt.Errorf("%w: rootfs %s is not a directory", ErrInvalid, rootfs)
	}
	t.mark("spec")

	if err := os.MkdirAll(r.root, 0o700); err != nil {
		return nil, nil, fmt.Errorf("state root: %w", err)
	}
	dir := r.dir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("container %s: %w", id, ErrExists)
		}
		return nil, nil, fmt.Errorf("state dir: %w", err)
	}
	var cg cgroups.Manager
	var proc *os.Process
	var cfg *initConfig
	defer func() {
		if err == nil {
			return
		}
		// A failed create leaves nothing: no process, cgroup or state.
		if proc != nil {
			_ = proc.Kill()
			if c != nil {
				<-c.done
			}
		}
		if cg != nil {
			_ = cg.Kill(unix.SIGKILL)
			_ = cg.Destroy()
		}
		_ = os.RemoveAll(dir)
		r.mu.Lock()
		delete(r.procs, id)
		r.mu.Unlock()
		c = nil
		if cfg != nil && cfg.console != nil {
			cfg.console.Close()
		}
	}()
	// The bytes read, not the spec encoded again: the same JSON, without
	// a cold encoder's cost.
	if err := os.WriteFile(filepath.Join(dir, configFile), raw, 0o600); err != nil {
		return nil, nil, fmt.Errorf("state dir: %w", err)
	}

	mode0 := cgroups.DetectAt(r.CgroupRoot)
	cgPath := r.cgroupPath(id, spec)
	if cg, err = cgroups.New(mode0, r.CgroupRoot, cgPath); err != nil {
		return nil, nil, err
	}
	if err := cg.Create(); err != nil {
		return nil, nil, err
	}
	if err := cg.Set(withDefaultDevices(spec.Linux.Resources)); err != nil {
		return nil, nil, err
	}
	t.mark("cgroup")

	cfg = &initConfig{
		Mode:       mode,
		Spec:       initSpec(spec),
		Rootfs:     rootfs,
		Bundle:     bundle,
		NoPivot:    opts.NoPivot,
		CgroupMode: mode0,
		CgroupRoot: r.CgroupRoot,
		CgroupPath: cgPath,
	}
	if spec.Linux.Seccomp != nil {
		if cfg.Seccomp, err = bundleSeccomp(bundle, raw, spec.Linux.Seccomp); err != nil {
			return nil, nil, err
		}
	}
	t.mark("seccomp")
	extra := &extraFiles{}
	defer extra.close()
	if mode == modeCreate {
		fifo := filepath.Join(dir, fifoFile)
		if err := unix.Mkfifo(fifo, 0o622); err != nil {
			return nil, nil, fmt.Errorf("exec fifo: %w", err)
		}
		// Opened here, read-write (never blocks, never sees EOF), and
		// inherited: the init may not be able to reach the state dir
		// (user namespace).
		if extra.fifo, err = os.OpenFile(fifo, os.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			return nil, nil, fmt.Errorf("exec fifo: %w", err)
		}
		cfg.Fifo = true
	}
	var join []nsPath
	var clone uintptr
	var attr syscall.SysProcAttr
	for _, ns := range spec.Linux.Namespaces {
		switch {
		case ns.Type == specs.UserNamespace && ns.Path != "":
			return nil, nil, fmt.Errorf("%w: joining a user namespace by path is not supported", ErrInvalid)
		case ns.Type == specs.UserNamespace:
			if len(spec.Linux.UIDMappings) == 0 || len(spec.Linux.GIDMappings) == 0 {
				return nil, nil, fmt.Errorf("%w: a user namespace needs uidMappings and gidMappings", ErrInvalid)
			}
			clone |= unix.CLONE_NEWUSER
			cfg.UserNS = true
			for _, m := range spec.Linux.UIDMappings {
				attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			for _, m := range spec.Linux.GIDMappings {
				attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			attr.GidMappingsEnableSetgroups = true
			// Host root is not mapped in the namespace, so execve would
			// drop every capability: become the namespace's root first.
			attr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
		case ns.Type == specs.MountNamespace && ns.Path != "":
			cfg.MountNS = ns.Path
		case ns.Type == specs.CgroupNamespace && ns.Path == "":
			cfg.NewCgroupNS = true // unshared by the init, after the cgroup join
		case ns.Path != "":
			join = append(join, nsPath{typ: nsFlags[ns.Type], path: ns.Path})
		default:
			clone |= uintptr(nsFlags[ns.Type])
		}
	}

	attr.Cloneflags = clone
	// A session of its own, as under runc: nothing sent to the caller's
	// process group or session reaches the container.
	attr.Setsid = true
	switch {
	case newConsole && !spec.Process.Terminal:
		return nil, nil, fmt.Errorf("%w: a console for a process without process.terminal", ErrInvalid)
	case newConsole:
		// Allocated by the init once the container's devpts is mounted;
		// the init makes it its controlling terminal in its new session.
		cfg.NewConsole = true
	case spec.Process.Terminal:
		// The caller hands us the terminal (the pty slave) as stdin; it
		// becomes the init's controlling terminal in a new session, and
		// /dev/console in the container.
		if cfg.Console, err = terminalOn(opts.Stdin); err != nil {
			return nil, nil, err
		}
		attr.Setctty, attr.Ctty = true, 0
	}
	overlay, err := rootfsOverlay(spec.Annotations)
	if err != nil {
		return nil, nil, err
	}
	if overlay != nil {
		// The rootfs is made here, attached nowhere, and attached by the
		// init in the container's own mount namespace only.
		if extra.rootfs, err = overlay.Detached(); err != nil {
			return nil, nil, fmt.Errorf("rootfs: %w", err)
		}
		cfg.AttachRootfs = true
	} else if cfg.UserNS {
		// The init, in its user namespace, may not be allowed to walk to
		// the rootfs (a 0700 bundle of host root): hand it a detached
		// copy of the rootfs mount, which it attaches in its own mount
		// namespace with move_mount.
		fd, err := unix.OpenTree(unix.AT_FDCWD, rootfs, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return nil, nil, fmt.Errorf("clone rootfs mount: %w", err)
		}
		extra.rootfs = os.NewFile(uintptr(fd), "rootfs")
	}
	stdio := Stdio{opts.Stdin, opts.Stdout, opts.Stderr}
	if how := firstProcPath(cfg, clone); how != viaGoInit {
		proc, c, err = r.startFirstProc(cfg, join, clone, how, extra, stdio, cg, t)
	} else {
		proc, c, err = r.startInit(cfg, join, &attr, extra, stdio, cg, t, true)
	}
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	r.procs[id] = c
	r.mu.Unlock()

	st := &containerState{
		OCIVersion:  specs.Version,
		ID:          id,
		Bundle:      bundle,
		Rootfs:      rootfs,
		Pid:         proc.Pid,
		StartTime:   c.startTime,
		Created:     time.Now().UTC(),
		Annotations: spec.Annotations,
		CgroupMode:  mode0,
		CgroupRoot:  r.CgroupRoot,
		CgroupPath:  cgPath,
		NoHooks:     spec.Hooks == nil,
	}
	if err := r.save(st); err != nil {
		return nil, nil, err
	}
	if h := spec.Hooks; h != nil {
		state := specs.State{Version: specs.Version, ID: id, Status: specs.StateCreated, Pid: st.Pid, Bundle: bundle, Annotations: spec.Annotations}
		if err := runHooks(ctx, "prestart", h.Prestart, state); err != nil {
			return nil, nil, err
		}
		if err := runHooks(ctx, "createRuntime", h.CreateRuntime, state); err != nil {
			return nil, nil, err
		}
	}
	if opts.PidFile != "" {
		if err := writePidFile(opts.PidFile, st.Pid); err != nil {
			return nil, nil, err
		}
	}
	t.mark("state")
	t.report(id)
	return c, cfg.console, nil
}

// alwaysAllowed are appended to any device cgroup rules, as runc does: the
// default nodes must work whatever the spec says, and mknod ('m') of any
// node is allowed so that linux.devices can be created (their use still
// needs an rw rule).
var alwaysAllowed = func() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	r := []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		{Allow: true, Type: "c", Major: n(136), Access: "rwm"}, // pts
	}
	for _, d := range [][2]int64{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}} {
		r = append(r, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: n(d[0]), Minor: n(d[1]), Access: "rwm"})
	}
	return r
}()

func withDefaultDevices(r *specs.LinuxResources) *specs.LinuxResources {
	if r == nil || len(r.Devices) == 0 {
		return r
	}
	c := *r
	c.Devices = append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	for _, a := range alwaysAllowed {
		if !inForce(r.Devices, a) {
			c.Devices = append(c.Devices, a)
		}
	}
	return &c
}

// inForce reports whether rules already grant a as the last word: an
// identical allow rule that no later deny rule may touch. Docker's default
// rules hold most of alwaysAllowed; appending them again cost a write to
// devices.allow each (on cgroup v1) at every start.
func inForce(rules []specs.LinuxDeviceCgroup, a specs.LinuxDeviceCgroup) bool {
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		if !r.Allow && overlaps(r, a) {
			return false
		}
		if r.Allow && r.Type == a.Type && sameNum(r.Major, a.Major) && sameNum(r.Minor, a.Minor) && r.Access == a.Access {
			return true
		}
	}
	return false
}

// overlaps is true when rules x and y may concern a common device and
// access: the type, major and minor each equal or a wildcard on either
// side, and a shared access letter ("" counts as all).
func overlaps(x, y specs.LinuxDeviceCgroup) bool {
	wild := func(t string) bool { return t == "" || t == "a" }
	num := func(a, b *int64) bool { return a == nil || b == nil || *a < 0 || *b < 0 || *a == *b }
	acc := func(s string) string {
		if s == "" {
			return "rwm"
		}
		return s
	}
	return (wild(x.Type) || wild(y.Type) || x.Type == y.Type) && num(x.Major, y.Major) && num(x.Minor, y.Minor) &&
		strings.ContainsAny(acc(x.Access), acc(y.Access))
}

func sameNum(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// terminalOn checks that f is a terminal and returns its path (the pty
// slave, /dev/pts/N), which is bind-mounted as the container's /dev/console.
func terminalOn(f *os.File) (string, error) {
	if f == nil {
		return "", fmt.Errorf("%w: process.terminal needs a terminal as stdin (see --console-socket)", ErrInvalid)
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return "", fmt.Errorf("%w: process.terminal: stdin is not a terminal", ErrInvalid)
	}
	path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return "", fmt.Errorf("process.terminal: %w", err)
	}
	return path, nil
}

// syncChannel makes the init's fd 4 and the parent's end of it: a pipe, or
// with a console to receive (SCM_RIGHTS) a unix socket pair.
func syncChannel(console bool) (parent, init *os.File, err error) {
	if !console {
		return os.Pipe()
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sync socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync"), nil
}

// extraFiles are descriptors the parent opens for the init because the
// init may lack the permission to open them itself (user namespace).
type extraFiles struct {
	rootfs, fifo *os.File
}

func (e *extraFiles) close() {
	if e == nil {
		return
	}
	if e.rootfs != nil {
		e.rootfs.Close()
	}
	if e.fifo != nil {
		e.fifo.Close()
	}
}

func writePidFile(path string, pid int) error {
	if err := atomicfile.Replace(path, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// startInit starts the init (or an exec'd process), puts it into the cgroup,
// sends it cfg and waits for its verdict: "ready" (create), exec having
// happened (run: fd 4 closes on exec), or the pid of the process it forked
// (exec).
//
// With reap, a goroutine waits for the process (ending when it exits) and
// the returned child carries the exit status; without, the caller waits.
func (r *Runtime) startInit(cfg *initConfig, join []nsPath, attr *syscall.SysProcAttr, extra *extraFiles, stdio Stdio, cg cgroups.Manager, t *timer, reap bool) (*os.Process, *child, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer cfgR.Close()
	defer cfgW.Close()
	syncR, syncW, err := syncChannel(cfg.NewConsole)
	if err != nil {
		return nil, nil, err
	}
	defer syncR.Close()
	defer syncW.Close()

	selfPath := SealedSelf
	if r.Self != nil {
		selfPath = r.Self
	}
	self, err := selfPath()
	if err != nil {
		return nil, nil, err
	}
	cmd := &exec.Cmd{
		Path:   self,
		Args:   append([]string{"shoal-init"}, r.InitArgs...),
		Env:    []string{"GOMAXPROCS=1", "GOGC=off"},
		Stdin:  stdio.Stdin,
		Stdout: stdio.Stdout,
		Stderr: stdio.Stderr,
		// fd 3: configuration, fd 4: verdict, 5: rootfs, 6: exec fifo.
		ExtraFiles:  []*os.File{cfgR, syncW},
		SysProcAttr: attr,
	}
	if extra != nil && (extra.rootfs != nil || extra.fifo != nil) {
		cmd.ExtraFiles = append(cmd.ExtraFiles, extra.rootfs, extra.fifo) // nil = closed
	}
	// On cgroup v2 the child is cloned straight into its cgroup
	// (CLONE_INTO_CGROUP): no migration afterwards.
	cgfd := openCgroupDir(cg)
	cloned := cgfd >= 0
	if cloned {
		defer unix.Close(cgfd)
		attr.UseCgroupFD, attr.CgroupFD = true, cgfd
	}
	err = startJoined(cmd, join)
	if err != nil && cloned {
		// Older kernels (< 5.7) lack clone3 into a cgroup: fork, then move.
		attr.UseCgroupFD, cloned = false, false
		cmd = rebuildCmd(cmd)
		err = startJoined(cmd, join)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("start init: %w", err)
	}
	t.mark("fork")
	// Read the start time now: the init cannot exit before it has its
	// config, whereas after exec a short process may be gone and reaped.
	_, start, ok := procStat(cmd.Process.Pid)
	if !ok {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, errors.New("init exited at start")
	}
	var c *child
	if reap {
		c = &child{done: make(chan struct{}), startTime: start}
		// The waiter ends when the process exits; kill paths guarantee it.
		go func() {
			AwaitExit(cmd.Process.Pid)
			err := cmd.Wait()
			c.status = exitCode(cmd.ProcessState, err)
			close(c.done)
		}()
	}
	fail := func(err error) (*os.Process, *child, error) {
		_ = cmd.Process.Kill()
		if c != nil {
			<-c.done
		} else {
			_ = cmd.Wait()
		}
		return nil, nil, err
	}
	cfgR.Close()
	syncW.Close()
	extra.close()
	// exited is err, or the init's own report when it failed and exited
	// while we were still moving it into its cgroup or releasing it: it
	// prepares the rootfs meanwhile, and one it cannot prepare (a console
	// without a devpts, say) ends it with its reason written. Read only
	// once the init is known gone (ESRCH, EPIPE): a live one writes
	// nothing before the go byte.
	exited := func(err error) error {
		var msg syncMsg
		if json.NewDecoder(syncR).Decode(&msg) == nil && msg.Error != "" {
			return msg.err()
		}
		return err
	}
	// The config goes first so that the init prepares the rootfs while we
	// move it into the cgroup (on v1 the first cgroup.procs write waits
	// for an RCU grace period, often several milliseconds); it waits for
	// the go byte before anything of the container runs.
	b, err := encodeInitConfig(cfg)
	if err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	if _, err := cfgW.Write(b); err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	if cg != nil && !cloned {
		if err := cg.Apply(cmd.Process.Pid); err != nil {
			if errors.Is(err, unix.ESRCH) {
				err = exited(err)
			}
			return fail(err)
		}
	}
	t.mark("apply")
	if _, err := cfgW.Write([]byte{goByte}); err != nil {
		if errors.Is(err, unix.EPIPE) {
			return fail(exited(fmt.Errorf("release init: %w", err)))
		}
		return fail(fmt.Errorf("release init: %w", err))
	}
	cfgW.Close()
	var report io.Reader = syncR
	if cfg.NewConsole {
		var first []byte
		if cfg.console, first, err = recvConsole(syncR); err != nil {
			return fail(err)
		}
		report = io.MultiReader(bytes.NewReader(first), syncR)
	}
	var msg syncMsg
	err = json.NewDecoder(report).Decode(&msg)
	t.mark("init")
	switch {
	case errors.Is(err, io.EOF):
		if cfg.Mode != modeRun {
			return fail(fmt.Errorf("init exited during setup"))
		}
		return cmd.Process, c, nil // exec'd: fd 4 was closed by execve
	case err != nil:
		return fail(fmt.Errorf("read from init: %w", err))
	case msg.Error != "":
		if msg.Pid > 0 {
			reapPid(msg.Pid)
		}
		return fail(msg.err())
	case msg.Pid > 0 && cfg.Mode == modeExec:
		// The helper forked the process as our child and exits.
		_ = cmd.Wait()
		p, err := os.FindProcess(msg.Pid)
		if err != nil {
			reapPid(msg.Pid)
			return nil, nil, fmt.Errorf("exec: find process %d: %w", msg.Pid, err)
		}
		return p, nil, nil
	}
	return cmd.Process, c, nil
}

// openCgroupDir opens the cgroup v2 directory of cg for CLONE_INTO_CGROUP,
// or returns -1 (cgroup v1, or it cannot be opened: the child is moved in
// after its birth instead).
func openCgroupDir(cg cgroups.Manager) int {
	d, ok := cg.(interface{ Dir() string })
	if !ok || cg == nil {
		return -1
	}
	fd, err := unix.Open(d.Dir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// reapPid waits for a child of ours that no exec.Cmd owns.
func reapPid(pid int) {
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
			return
		}
	}
}

// rebuildCmd copies an exec.Cmd that failed to start (one cannot be
// started twice).
func rebuildCmd(c *exec.Cmd) *exec.Cmd {
	return &exec.Cmd{Path: c.Path, Args: c.Args, Env: c.Env, Stdin: c.Stdin, Stdout: c.Stdout,
		Stderr: c.Stderr, ExtraFiles: c.ExtraFiles, SysProcAttr: c.SysProcAttr}
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// State reports the OCI state of a container.
func (r *Runtime) State(id string) (specs.State, error) {
	st, err := r.load(id)
	if err != nil {
		return specs.State{}, err
	}
	s := specs.State{
		Version:     st.OCIVersion,
		ID:          st.ID,
		Status:      r.status(st),
		Bundle:      st.Bundle,
		Annotations: st.Annotations,
	}
	if s.Status == specs.StateCreated || s.Status == specs.StateRunning {
		s.Pid = st.Pid
	}
	return s, nil
}

// Start runs the process of a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	if s := r.status(st); s != specs.StateCreated {
		return fmt.Errorf("start %s: %w: it is %s", id, ErrState, s)
	}
	fifo := filepath.Join(r.dir(id), fifoFile)
	// The init holds the fifo open read-write: a non-blocking write-only
	// open succeeds exactly when it is alive.
	f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	_, err = f.Write([]byte{0})
	f.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	if err := os.Remove(fifo); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	if st.NoHooks {
		return nil
	}
	if spec, err := r.savedSpec(id); err == nil && spec.Hooks != nil {
		warnHooks(ctx, "poststart", spec.Hooks.Poststart, specs.State{
			Version: specs.Version, ID: id, Status: specs.StateRunning, Pid: st.Pid, Bundle: st.Bundle, Annotations: st.Annotations})
	}
	return nil
}

// Kill sends sig to the container's init, or with all to every process in
// its cgroup. The container must be created or running.
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	if s := r.status(st); s != specs.StateCreated && s != specs.StateRunning {
		return fmt.Errorf("kill %s: %w: it is %s", id, ErrState, s)
	}
	if all {
		cg, err := cgroups.New(st.CgroupMode, st.CgroupRoot, st.CgroupPath)
		if err != nil {
			return err
		}
		if err := cg.Kill(sig); err != nil {
			return fmt.Errorf("kill %s: %w", id, err)
		}
		return nil
	}
	if err := unix.Kill(st.Pid, sig); err != nil {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	return nil
}

// Delete removes a stopped container's cgroup and state. A created or
// running container is refused unless force, which kills it first.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	cg, err := cgroups.New(st.CgroupMode, st.CgroupRoot, st.CgroupPath)
	if err != nil {
		return err
	}
	switch s := r.status(st); s {
	case specs.StateRunning, specs.StateCreated, specs.StateCreating:
		if !force {
			return fmt.Errorf("delete %s: %w: it is %s (use force)", id, ErrState, s)
		}
		_ = cg.Kill(unix.SIGKILL)
		if st.Pid > 0 && alive(st.Pid, st.StartTime) {
			_ = unix.Kill(st.Pid, unix.SIGKILL)
		}
		if err := r.waitStopped(ctx, st); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := cg.Destroy(); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	var spec *specs.Spec
	if !st.NoHooks {
		spec, _ = r.savedSpec(id)
	}
	if err := os.RemoveAll(r.dir(id)); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.procs, id)
	r.mu.Unlock()
	if spec != nil && spec.Hooks != nil {
		warnHooks(ctx, "poststop", spec.Hooks.Poststop, specs.State{
			Version: specs.Version, ID: id, Status: specs.StateStopped, Bundle: st.Bundle, Annotations: st.Annotations})
	}
	return nil
}

func (r *Runtime) waitStopped(ctx context.Context, st *containerState) error {
	r.mu.Lock()
	c := r.procs[st.ID]
	r.mu.Unlock()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	if c != nil {
		// Our child: its waiter says when it is gone.
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("init %d did not die", st.Pid)
		}
	}
	// Another process's child: a pidfd becomes readable when it exits.
	fd, err := unix.PidfdOpen(st.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd of init %d: %w", st.Pid, err)
	}
	defer unix.Close(fd)
	// The pid may have been reused between the kill and the open.
	if !alive(st.Pid, st.StartTime) {
		return nil
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		// In slices, so that a cancelled ctx is seen; no busy polling.
		n, err := unix.Poll(fds, 100)
		switch {
		case n > 0:
			return nil
		case err != nil && !errors.Is(err, unix.EINTR):
			return fmt.Errorf("wait for init %d: %w", st.Pid, err)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("init %d did not die", st.Pid)
		default:
		}
	}
}

// OOMKillCount reports how many processes of the container the kernel OOM
// killer has killed; a caller compares it before and after a run to report
// OOMKilled.
func (r *Runtime) OOMKillCount(id string) (uint64, error) {
	st, err := r.load(id)
	if err != nil {
		return 0, err
	}
	cg, err := cgroups.New(st.CgroupMode, st.CgroupRoot, st.CgroupPath)
	if err != nil {
		return 0, err
	}
	return cg.OOMKillCount()
}

// Cgroup returns the manager of a container's cgroup (stats, pids).
func (r *Runtime) Cgroup(id string) (cgroups.Manager, error) {
	st, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return cgroups.New(st.CgroupMode, st.CgroupRoot, st.CgroupPath)
}

// List returns the ids of every container with state under the root.
func (r *Runtime) List() ([]string, error) {
	ents, err := os.ReadDir(r.root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && validateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Exec starts p inside a running container: it joins all of the init's
// namespaces and its cgroup, with p's user, capabilities, no_new_privs and
// the container's seccomp policy. The caller waits for the returned process.
func (r *Runtime) Exec(ctx context.Context, id string, p specs.Process, stdio Stdio) (*os.Process, error) {
	st, err := r.load(id)
	if err != nil {
		return nil, err
	}
	if s := r.status(st); s != specs.StateRunning && s != specs.StateCreated {
		return nil, fmt.Errorf("exec in %s: %w: it is %s", id, ErrState, s)
	}
	if !sameNamespace(fmt.Sprintf("/proc/%d/ns/user", st.Pid), "/proc/thread-self/ns/user") {
		return nil, fmt.Errorf("%w: exec into a container with a user namespace is not supported", ErrInvalid)
	}
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("%w: exec: no command", ErrInvalid)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if err := validateCaps(p.Capabilities); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(r.dir(id), configFile))
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	spec.Process = &p
	// The exec helper itself stays in the host's pid namespace, out of the
	// container's sight; it joins the mount and pid namespaces on its own
	// thread and forks the process into them (init.go spawnExec).
	cfg := &initConfig{Mode: modeExec, Spec: initSpec(&spec), MountNS: fmt.Sprintf("/proc/%d/ns/mnt", st.Pid)}
	if p := fmt.Sprintf("/proc/%d/ns/pid", st.Pid); !sameNamespace(p, "/proc/thread-self/ns/pid") {
		cfg.PidNS = p
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil {
		if cfg.Seccomp, err = seccomp.Compile(spec.Linux.Seccomp); err != nil {
			return nil, err
		}
	}
	var join []nsPath
	for _, n := range []struct {
		name string
		typ  int
	}{{"cgroup", unix.CLONE_NEWCGROUP}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET}} {
		path := fmt.Sprintf("/proc/%d/ns/%s", st.Pid, n.name)
		if sameNamespace(path, "/proc/thread-self/ns/"+n.name) {
			continue
		}
		join = append(join, nsPath{typ: n.typ, path: path})
	}
	cg, err := cgroups.New(st.CgroupMode, st.CgroupRoot, st.CgroupPath)
	if err != nil {
		return nil, err
	}
	// With a terminal, the exec'd process (not the helper) makes it its
	// controlling terminal.
	attr := &syscall.SysProcAttr{}
	if p.Terminal {
		if _, err := terminalOn(stdio.Stdin); err != nil {
			return nil, err
		}
	}
	proc, _, err := r.startInit(cfg, join, attr, nil, stdio, cg, newTimer(), false)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	return proc, nil
}

func sameNamespace(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

// initSpec is the part of spec the init uses: without the seccomp policy
// (the init gets the compiled program), the cgroup resources, hooks and
// annotations, which the parent handles. Their JSON, the policy's above
// all, would cost the init's cold decoder a millisecond and more.
func initSpec(spec *specs.Spec) *specs.Spec {
	s := *spec
	s.Hooks, s.Annotations = nil, nil
	if s.Linux != nil {
		l := *s.Linux
		l.Seccomp, l.Resources = nil, nil
		s.Linux = &l
	}
	return &s
}

// goByte follows the config on fd 3 once the init is in its cgroup.
const goByte = 'G'

// syncMsg is what the init reports on fd 4.
type syncMsg struct {
	Ready bool   `json:"ready,omitempty"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"` // "notfound" | "permission"
	// Pid is the exec'd process (exec mode), a child of the caller.
	Pid int `json:"pid,omitempty"`
}

// readyMsg is syncMsg{Ready: true} as json.Encoder writes it.
const readyMsg = `{"ready":true}` + "\n"

func (m syncMsg) err() error {
	switch m.Kind {
	case "notfound":
		return fmt.Errorf("%s: %w", m.Error, ErrExecNotFound)
	case "permission":
		return fmt.Errorf("%s: %w", m.Error, ErrExecPermission)
	}
	return errors.New(m.Error)
}

// timer records stage durations; SHOAL_RUNTIME_TRACE=1 prints them.
type timer struct {
	on    bool
	last  time.Time
	parts []string
}

func newTimer() *timer {
	return &timer{on: os.Getenv("SHOAL_RUNTIME_TRACE") != "", last: time.Now()}
}

func (t *timer) mark(stage string) {
	if !t.on {
		return
	}
	now := time.Now()
	t.parts = append(t.parts, fmt.Sprintf("%s=%s", stage, now.Sub(t.last).Round(10*time.Microsecond)))
	t.last = now
}

func (t *timer) report(id string) {
	if t.on {
		fmt.Fprintf(os.Stderr, "shoal-runtime %s: %s\n", id, strings.Join(t.parts, " "))
	}
}
