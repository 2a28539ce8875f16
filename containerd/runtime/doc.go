// Package runtime is shoal's OCI runtime: it creates, starts, signals,
// inspects and deletes containers described by an OCI bundle (config.json +
// rootfs), using Linux namespaces, cgroups (package cgroups), pivot_root,
// capabilities and seccomp (package seccomp). No runc, no libcontainer.
//
// # Processes
//
// The caller (the shim, the `shoal runtime` CLI or a test) re-executes its own
// binary as the container's init, through a read-only view (seal.go: a
// detached read-only overlayfs mount of the binary's directory, or else a
// sealed memfd copy), never the host's file: a container process that runs
// that binary (an entrypoint "#!/proc/self/exe") could otherwise reopen it
// for writing (CVE-2019-5736). The daemon makes the view once at start and
// starts shims from it, so shims reuse it; the runtime CLI makes one per
// invocation (the overlay costs a few syscalls, no copy). SysProcAttr.Cloneflags makes
// the new pid, mount, uts, ipc and network namespaces at clone time.
// Namespaces given by path are joined by the parent on a locked, throwaway OS
// thread just before the fork (so the child is born in them; for the pid
// namespace this is the only way), except the mount namespace, which the init
// joins itself (setns(mnt) needs unshare(CLONE_FS) on its own locked thread).
//
// Exec is different, because the container's processes are already there
// to watch it (CVE-2016-9962): the exec helper is born in the host's pid
// namespace, invisible to the container, and non-dumpable. On its locked
// thread it joins the container's pid and mount namespaces, drops to the
// process's credentials, no_new_privs and seccomp policy, and forks the
// process from that thread (CLONE_PARENT, so the caller is its parent and
// waits for it); the helper reports the pid and exits. The process is thus
// born single-threaded with nothing of the host, while the helper's other
// Go threads, which keep the host's root and capabilities, are never within
// the container's reach. Every init is non-dumpable until its execve.
// A new cgroup namespace is unshared by the init once the parent has put it
// into the container's cgroup, so its root is that cgroup.
//
// The parent sends the init its configuration (fd 3), moves it into the
// cgroup, then sends a go byte on fd 3. The init prepares the rootfs in the
// meantime (the v1 cgroup move waits for an RCU grace period) but waits for
// the go byte before anything of the container can run. The init, on one
// locked OS thread, mounts the rootfs and mounts[], creates /dev, pivots,
// applies sysctls, read-only and masked paths, hostname, waits for the go
// byte, unshares the cgroup namespace, then applies rlimits,
// no_new_privs, seccomp, user and capabilities, and then:
//   - create: reports "ready" on fd 4 and blocks reading the exec fifo
//     <state>/exec.fifo (fd 6: the parent opened it O_RDWR, so the read
//     blocks until `start` writes a byte), then execs the process;
//   - run: execs at once; fd 4 is close-on-exec, so the parent reads EOF on
//     success and an error message on failure.
//
// # The first process without the Go init
//
// Where it applies (see firstproc.go for the list), create does not
// re-execute the binary at all: a locked,
// disposable thread of the caller joins and unshares the namespaces, clones
// the container's first process with CLONE_VM into a new pid namespace, and
// does the init's rootfs work itself (proc is mounted for that pid namespace
// with procfs's pidns option) while the process waits; the process, which
// runs no Go runtime, then sets its own credentials, capabilities, seccomp
// and limits and execs. The caller is non-dumpable from then on, since the
// process shares its memory until its execve. A binary that is not sealed
// (`shoal runtime run` from disk) has the process exec a trampoline of a
// few instructions from a sealed memfd (trampoline_amd64.go), which execs
// the container's program, so that no program of the container ever runs
// with our binary as /proc/self/exe (CVE-2019-5736).
//
// # Paths inside the rootfs
//
// The init resolves every mount target, device node, /dev symlink, the
// console and the working directory from one descriptor of the rootfs
// (package inroot, openat2 RESOLVE_IN_ROOT), creates what is missing
// relative to its parent's descriptor and mounts through an O_PATH
// descriptor: a volume shared with another, running container that swaps a
// directory for a symlink to / cannot make it create or mount anything on
// the host. proc and sysfs must go on a directory reached without any
// symlink; a start whose /proc or /sys is one is refused (CVE-2019-19921).
//
// # Dispatch from main
//
// The re-executed binary must call InitMain before doing anything else when
// its first argument is "init" (Runtime.InitArgs changes this):
//
//	if len(os.Args) > 1 && os.Args[1] == "init" {
//		runtime.InitMain() // never returns
//	}
//
// Package init functions of the binary still run first; keep them cheap,
// they are on every container's start path.
//
// # State
//
// <stateRoot>/<id>/state.json records the init's pid and its start time
// (/proc/<pid>/stat field 22): a dead, zombie or reused pid reads as stopped.
// created vs running is the presence of the exec fifo. A copy of config.json
// is kept there too: exec reuses its seccomp policy and cgroup.
//
// Hooks: prestart, createRuntime (after the init is ready, before start),
// poststart and poststop run in the runtime's namespaces with the state on
// stdin; createContainer and startContainer hooks are not run.
//
// User namespaces: created with linux.uidMappings/gidMappings (the init
// becomes the namespace's root before exec; device nodes are bind-mounted
// from the host since mknod is refused; the rootfs is handed over as a
// detached mount). Joining one by path, and exec into such a container, are
// refused.
//
// Terminals: with process.terminal and CreateConsole the runtime allocates
// the terminal itself, on the container's devpts, once the init has mounted
// it: the process finds it as /dev/pts/0 (a host pty would have no name in
// the container) and on /dev/console, as under runc. A Go init makes it its
// stdio and controlling terminal and sends the master back over its sync
// socket (SCM_RIGHTS); for a cloned first process the thread allocates it
// and the process opens it by name. The shim and `shoal runtime create
// --console-socket` use it. With Create or Run the caller may instead pass
// a terminal of its own (a pty slave) as stdin; it becomes the controlling
// terminal of a new session and is bind-mounted on /dev/console.
//
// The seccomp policy of an exec'd process is loaded before that fork, so it
// must allow clone (without namespace flags) and the few calls between fork
// and execve (dup3, fcntl, close, chdir, setsid, ioctl); Docker's default
// profile does.
//
// Not done: AppArmor/SELinux labels, time namespaces, memory.kmem limits
// (deprecated).
package runtime
