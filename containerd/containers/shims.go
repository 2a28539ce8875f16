package containers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

// startsPerShim is how many containers the engine hands one shim process
// before it starts the next. One shim per container cost a Go process start
// each (the shims were 58% of the CPU while 1,000 replicas converged on ten
// test hosts, half of it the Go runtime's start and its page faults);
// one for all would put every container's supervision on one process. 32
// bounds what a killed shim takes down, and spreads the supervision of
// many containers over several processes of one P each.
const startsPerShim = 32

// shimSendTimeout bounds the hand-over of one start request to a shim.
const shimSendTimeout = 10 * time.Second

// shimsCgroup is the cgroup, under the containers' parent, that shims are
// moved to.
const shimsCgroup = "shims"

// shimPool starts shim processes and hands out the current one. Its mutex
// is held while a request is sent, so that a shim is retired only after its
// last request has gone.
type shimPool struct {
	mu    sync.Mutex
	cur   *shimProc
	limit int // starts per shim; startsPerShim unless a test sets it

	cgOnce sync.Once
	cg     cgroups.Manager // <parent>/shims, nil if it could not be made
}

// shimProc is one shim process and the engine's end of its control socket.
type shimProc struct {
	pid    int
	ctl    *net.UnixConn
	starts int
}

// sendToShim hands a container's start to the current shim (starting one
// if there is none or it has died) and returns the shim's pid. The caller
// closes its copies of the descriptors.
func (e *Engine) sendToShim(opts shim.Options, status, log *os.File, clients []*os.File) (int, error) {
	p := &e.shimPool
	p.mu.Lock()
	defer p.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if p.cur == nil {
			// A shim started now would find its control socket closed.
			if err := e.ctx.Err(); err != nil {
				return 0, fmt.Errorf("start shim: the engine has stopped: %w", err)
			}
			s, err := e.startShimProc()
			if err != nil {
				return 0, err
			}
			p.cur = s
		}
		s := p.cur
		// A shim that does not read (stopped, wedged) must not hold every
		// start behind this lock: it is given up like a dead one.
		_ = s.ctl.SetWriteDeadline(time.Now().Add(shimSendTimeout))
		err := shim.Send(s.ctl, opts, status, log, clients...)
		if err != nil {
			// Dead (killed, or out of memory): the next one takes the request.
			s.ctl.Close()
			p.cur = nil
			if attempt == 0 {
				continue
			}
			return 0, err
		}
		s.starts++
		limit := p.limit
		if limit == 0 {
			limit = startsPerShim
		}
		if s.starts >= limit {
			// Retired: it exits once its containers have.
			s.ctl.Close()
			p.cur = nil
		}
		return s.pid, nil
	}
}

// startShimProc starts a shim process with a control socket.
func (e *Engine) startShimProc() (*shimProc, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "shim control"), os.NewFile(uintptr(fds[1]), "shim control")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	ctl := c.(*net.UnixConn)
	logf, err := os.OpenFile(filepath.Join(e.opts.ExecRoot, "shim", "shims.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(e.opts.Shim, "shim", "--state-root", filepath.Join(e.opts.ExecRoot, "shim"))
	// One P: the shim waits and copies output, work that one thread does
	// well, and its creates leave the other CPUs to the containers' first
	// processes, on the start's critical path. It parks no thread in a
	// system call (runtime.AwaitExit, its non-blocking pipes), which with
	// one P would stall its other goroutines.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{theirs}
	// Its own session: signals to the daemon's group never reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		ctl.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	s := &shimProc{pid: cmd.Process.Pid, ctl: ctl}
	// The engine's end closes with the engine: the shim then exits once its
	// containers have, and the next daemon starts its own.
	stop := context.AfterFunc(e.ctx, func() { ctl.Close() })
	// It leaves the daemon's cgroup before its first container: once per
	// shim, and not from a goroutine that could make the shims cgroup
	// after the engine has ended.
	e.moveToShims(s.pid)
	// Reaped while this daemon lives; after a restart init does.
	go func() {
		runtime.AwaitExit(s.pid) // no thread parked per shim
		_ = cmd.Wait()
		stop()
		ctl.Close()
		e.shimPool.mu.Lock()
		if e.shimPool.cur == s {
			e.shimPool.cur = nil
		}
		e.shimPool.mu.Unlock()
	}()
	return s, nil
}

// moveToShims moves a shim out of the daemon's cgroup into
// <parent>/shims (every hierarchy, the unified one of a hybrid host
// included), so that a service manager stopping the daemon's cgroup does
// not take the containers' supervisors with it. The engine does it rather
// than the shim: a v1 move waits for an RCU grace period, which a shim with
// one P would spend not watching its containers. Best effort: on failure
// the shim stays where it was. The shared cgroup is made once and stays, as
// the parent does.
func (e *Engine) moveToShims(pid int) {
	p := &e.shimPool
	p.cgOnce.Do(func() {
		m, err := cgroups.New(cgroups.Detect(), e.rt.CgroupRoot, path.Join(cgroupParent(e.opts.CgroupParent), shimsCgroup))
		if err == nil && m.Create() == nil {
			p.cg = m
		}
	})
	if p.cg != nil {
		_ = p.cg.Apply(pid)
	}
}
