package runtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/inroot"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

const (
	configFd = 3
	syncFd   = 4
	rootfsFd = 5
	fifoFd   = 6
)

// initError carries the kind the parent maps to ErrExecNotFound etc.
type initError struct {
	kind string
	err  error
	pid  int // exec: a forked child that exists despite the error
}

func (e *initError) Error() string { return e.err.Error() }

// InitMain is the container init: the entry point of the re-executed binary
// (see the package doc for how main dispatches to it). It never returns: it
// execs the container process or exits non-zero after reporting an error to
// the parent on fd 4.
func InitMain() {
	// Every per-thread attribute (namespaces joined by setns, capabilities,
	// seccomp, no_new_privs) is set on this thread, which then calls execve.
	goruntime.LockOSThread()
	// Until execve makes this process the container's, nothing in the
	// container may ptrace it or read its /proc files (CVE-2016-9962):
	// its other threads keep the host's root and full capabilities.
	// execve resets the flag for the container's process.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	for fd := configFd; fd <= fifoFd; fd++ {
		unix.CloseOnExec(fd)
	}
	sync := os.NewFile(syncFd, "sync")
	err := initMain(sync)
	// Only reached on failure.
	msg := syncMsg{Error: err.Error()}
	var ie *initError
	if errors.As(err, &ie) {
		msg.Kind, msg.Pid = ie.kind, ie.pid
	}
	if json.NewEncoder(sync).Encode(msg) != nil {
		// The parent is gone (after start): stderr is all we have.
		fmt.Fprintln(os.Stderr, "shoal-init:", err)
	}
	switch msg.Kind {
	case "notfound":
		os.Exit(127)
	case "permission":
		os.Exit(126)
	}
	os.Exit(1)
}

func initMain(sync *os.File) error {
	f := os.NewFile(configFd, "config")
	var n [4]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return fmt.Errorf("init: read config: %w", err)
	}
	size := binary.LittleEndian.Uint32(n[:])
	if size > maxInitConfig {
		return fmt.Errorf("init: config of %d bytes", size)
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(f, raw); err != nil {
		return fmt.Errorf("init: read config: %w", err)
	}
	cfg, err := decodeInitConfig(raw)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// waitInCgroup blocks until the parent has moved us into the
	// container's cgroup; nothing of the container may run before.
	waitInCgroup := func() error {
		var b [1]byte
		if _, err := io.ReadFull(f, b[:]); err != nil {
			return fmt.Errorf("init: parent did not release us: %w", err)
		}
		if b[0] != goByte {
			return fmt.Errorf("init: unexpected byte %q after config", b[0])
		}
		f.Close()
		return nil
	}
	spec := cfg.Spec
	if spec == nil || spec.Process == nil {
		return errors.New("init: no process in config")
	}
	// The pid namespace first: its path is in the host's /proc, which the
	// container's mount namespace hides. Only this thread's future children
	// go there (see spawnExec).
	if cfg.PidNS != "" {
		if err := joinNS(cfg.PidNS, unix.CLONE_NEWPID); err != nil {
			return err
		}
	}
	if cfg.MountNS != "" {
		if err := joinMountNS(cfg.MountNS); err != nil {
			return err
		}
	}
	fifo := -1
	if cfg.Fifo {
		fifo = fifoFd
	}
	if cfg.Mode != modeExec {
		if err := setupRootfs(cfg); err != nil {
			return err
		}
		if spec.Hostname != "" {
			if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
				return fmt.Errorf("sethostname: %w", err)
			}
		}
		if spec.Domainname != "" {
			if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
				return fmt.Errorf("setdomainname: %w", err)
			}
		}
		if cfg.NewConsole {
			if err := takeConsole(sync, cfg); err != nil {
				return err
			}
		}
	}
	if err := waitInCgroup(); err != nil {
		return err
	}
	// After the cgroup join, so that the namespace's root is the
	// container's cgroup. Per thread: this one, which calls execve.
	if cfg.NewCgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	p := spec.Process
	for _, rl := range p.Rlimits {
		// syscall.Setrlimit, not a raw prlimit: the Go runtime raised
		// RLIMIT_NOFILE at start and would restore its own saved value at
		// execve unless told, through this call, that it was set on purpose.
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(rlimitByName[rl.Type], &lim); err != nil {
			return fmt.Errorf("setrlimit %s: %w", rl.Type, err)
		}
	}
	// Whatever thread of the daemon or shim this init was started from
	// (see timerslack.go), the container's process gets the kernel's
	// default. Before seccomp, whose policy may refuse prctl.
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, DefaultTimerSlack, 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	if p.OOMScoreAdj != nil && cfg.Mode != modeExec {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(*p.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("oom_score_adj: %w", err)
		}
	}
	path, err := lookPath(p)
	if err != nil {
		return err
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	// No descriptor but 0-2 may reach the container (CVE-2024-21626): mark
	// them all close-on-exec; the fifo and the sync pipe already are.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	// Without no_new_privs loading a filter needs CAP_SYS_ADMIN, so it goes
	// before the capability drop; with it, as late as possible so the
	// policy need not allow the runtime's own syscalls.
	if cfg.Seccomp != nil && !p.NoNewPrivileges {
		if err := seccomp.Load(cfg.Seccomp); err != nil {
			return err
		}
	}
	if err := setUserAndCaps(p); err != nil {
		return err
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return fmt.Errorf("chdir %s: %w", p.Cwd, err)
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	} else {
		unix.Umask(0o022)
	}
	if fifo >= 0 {
		// Written as it is: encoding/json's encoder, not used otherwise
		// on the way to exec, would cost the init its cold start.
		if _, err := sync.WriteString(readyMsg); err != nil {
			return fmt.Errorf("report ready: %w", err)
		}
		sync.Close()
		// Blocks until `start` writes a byte (we hold the fifo read-write,
		// so there is never an EOF).
		var b [1]byte
		for {
			_, err := unix.Read(fifo, b[:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("wait for start: %w", err)
			}
			break
		}
		unix.Close(fifo)
	}
	if cfg.Seccomp != nil && p.NoNewPrivileges {
		if err := seccomp.Load(cfg.Seccomp); err != nil {
			return err
		}
	}
	if cfg.Mode == modeExec {
		return spawnExec(sync, path, p)
	}
	err = unix.Exec(path, p.Args, p.Env)
	return execError(p.Args[0], err)
}

// takeConsole makes the terminal newConsole allocated this process's stdio
// and controlling terminal (the parent started it in a session of its own)
// and sends its master to the parent.
func takeConsole(sync *os.File, cfg *initConfig) error {
	s := int(cfg.consoleSlave.Fd())
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(s, fd, 0); err != nil {
			return fmt.Errorf("console: stdio: %w", err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("console: controlling terminal: %w", err)
	}
	err := sendConsole(sync, cfg.console)
	cfg.console.Close()
	cfg.consoleSlave.Close()
	return err
}

// execError classifies a failed execve as the parent reports it.
func execError(arg0 string, err error) error {
	if err == nil {
		return nil
	}
	kind := ""
	if errors.Is(err, unix.ENOENT) {
		kind = "notfound"
	} else if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		kind = "permission"
	}
	return &initError{kind: kind, err: fmt.Errorf("exec %s: %w", arg0, err)}
}

// spawnExec starts an exec'd process. This helper process was born in the
// host's pid namespace, where the container cannot see it, and its other Go
// threads still have the host's root and capabilities; so it does not exec
// the process itself. It forks it from this thread, which has joined the
// container's mount and pid namespaces and dropped to the process's
// credentials, seccomp policy and no_new_privs: the child is born with
// exactly those, single-threaded, in the container's pid namespace. It is a
// vfork sharing this process's memory until its execve, but this process is
// non-dumpable, so the container cannot ptrace it in between. CLONE_PARENT
// makes the caller (daemon, shim or runtime CLI) its parent, which waits
// for it as before; this helper reports the pid and exits.
func spawnExec(sync *os.File, path string, p *specs.Process) error {
	attr := &syscall.ProcAttr{
		Env:   p.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Cloneflags: unix.CLONE_PARENT},
	}
	if p.Terminal {
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	}
	pid, err := syscall.ForkExec(path, p.Args, attr)
	if err != nil {
		ie := execError(p.Args[0], err).(*initError)
		ie.pid = pid // a child that failed its execve is the caller's to reap
		return ie
	}
	if err := json.NewEncoder(sync).Encode(syncMsg{Pid: pid}); err != nil {
		return fmt.Errorf("report exec pid: %w", err)
	}
	os.Exit(0)
	return nil
}

// joinMountNS enters a mount namespace. setns(mnt) fails for a thread that
// shares its filesystem information (root, cwd) with others, as Go threads
// do, so this thread first gets a private copy.
func joinMountNS(path string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	return joinNS(path, unix.CLONE_NEWNS)
}

// joinNS makes this thread enter the namespace at path.
func joinNS(path string, typ int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, typ); err != nil {
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	return nil
}

// setupRootfs prepares and enters the container's root filesystem.
func setupRootfs(cfg *initConfig) error {
	spec := cfg.Spec
	// Mounts made from here on must not reach the host: slave by default.
	prop := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if p, ok := propagationFlags[spec.Linux.RootfsPropagation]; ok && spec.Linux.RootfsPropagation != "" {
		if p&unix.MS_SHARED == 0 {
			prop = p
		}
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("set / propagation: %w", err)
	}
	// pivot_root needs the new root to be a mount point. A rootfs that
	// the runtime made itself (RootfsOverlayAnnotation) is a detached
	// mount, attached here, in this namespace only. In a user namespace
	// the rootfs path may not be searchable (a 0700 bundle owned by host
	// root), so the parent's detached copy of it (fd 5) is attached over
	// /tmp instead, which every user can reach; this mount namespace is
	// private and the old root is detached after the pivot.
	mfd := rootfsFd
	if cfg.rootfsMount > 0 {
		mfd = cfg.rootfsMount
	}
	if cfg.UserNS {
		cfg.Rootfs = "/tmp"
	}
	if cfg.UserNS || cfg.AttachRootfs {
		if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, cfg.Rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach rootfs: %w", err)
		}
	} else if err := unix.Mount(cfg.Rootfs, cfg.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs: %w", err)
	}
	// Every path inside the rootfs is resolved from this one descriptor.
	root, err := inroot.OpenRoot(cfg.Rootfs)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	// Device nodes and files get exactly the modes asked for.
	old := unix.Umask(0)
	defer unix.Umask(old)
	devBind := false
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == "/dev" && (m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")) {
			devBind = true
		}
		if err := mountOne(root, cfg, m); err != nil {
			return err
		}
	}
	if !devBind {
		if err := createDevices(root, spec.Linux.Devices, cfg.UserNS); err != nil {
			return err
		}
	}
	switch {
	case cfg.NewConsole:
		if err := newConsole(root, cfg); err != nil {
			return err
		}
	case cfg.Console != "":
		if err := bindConsole(root, cfg.Console); err != nil {
			return err
		}
	}
	// The working directory is created like Docker does, inside the rootfs.
	if fd, _, err := root.MkdirAll(spec.Process.Cwd, 0o755); err == nil {
		unix.Close(fd)
	}
	if cfg.NoPivot {
		err = moveRoot(cfg.Rootfs)
	} else {
		err = pivotRoot(cfg.Rootfs)
	}
	if err != nil {
		return err
	}
	if p := spec.Linux.RootfsPropagation; p != "" {
		if flag := propagationFlags[p]; flag&unix.MS_SHARED != 0 {
			if err := unix.Mount("", "/", "", flag, ""); err != nil {
				return fmt.Errorf("rootfs propagation %s: %w", p, err)
			}
		}
	}
	if spec.Root.Readonly {
		var st unix.Statfs_t
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		if unix.Statfs("/", &st) == nil {
			flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		}
		if err := unix.Mount("", "/", "", flags, ""); err != nil {
			return fmt.Errorf("readonly root: %w", err)
		}
	}
	for k, v := range spec.Linux.Sysctl {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	for _, p := range spec.Linux.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return err
		}
	}
	if len(spec.Linux.MaskedPaths) > 0 {
		null, err := openDevNull()
		if err != nil {
			return err
		}
		defer unix.Close(null)
		for _, p := range spec.Linux.MaskedPaths {
			if err := maskPath(p, null); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// lookPath finds args[0] like execvp, on the container's PATH, inside the
// container root (we are already pivoted).
func lookPath(p *specs.Process) (string, error) {
	name := p.Args[0]
	if strings.Contains(name, "/") {
		return name, checkExecutable(name)
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	var firstErr error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		cand := filepath.Join(dir, name)
		err := checkExecutable(cand)
		if err == nil {
			return cand, nil
		}
		var ie *initError
		if errors.As(err, &ie) && ie.kind == "permission" && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", &initError{kind: "notfound", err: fmt.Errorf("exec: %q: executable file not found in $PATH", name)}
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &initError{kind: "notfound", err: fmt.Errorf("exec: %s: no such file or directory", path)}
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return &initError{kind: "permission", err: fmt.Errorf("exec: %s: permission denied", path)}
	}
	return nil
}

var rlimitByName = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}
