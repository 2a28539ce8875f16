package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Spares keeps a few network namespaces made ahead of need (lo up, nothing
// else), so that a container start takes one instead of making it: the
// making (unshare on a thread of its own, the bind mount, a netlink handle
// to bring lo up) is 1-2 ms of CPU and wall that otherwise sits on every
// start's path. The namespaces are fresh: none is ever used twice.
//
// One goroutine makes them, until the context given to NewSpares ends or
// Close; a Take when none is ready makes one itself.
type Spares struct {
	dir   string
	ready chan string
	// retire takes the pool's mounts of taken spares to the filling
	// goroutine, which unmounts them: an unmount waits for an RCU grace
	// period (1.2 ms here), which a take need not wait for.
	retire chan string
	cancel context.CancelFunc
	done   chan struct{}
}

// NewSpares keeps n spare namespaces under dir (a directory of their own:
// what is in it when it starts is the leftovers of an earlier process and
// is removed): n-1 in the pool and one in the hands of the goroutine that
// makes them, waiting for room.
func NewSpares(ctx context.Context, dir string, n int) (*Spares, error) {
	if n < 1 {
		return nil, fmt.Errorf("spare namespaces: %d is not a pool size", n)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spare namespaces: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, fmt.Errorf("spare namespaces: %w", err)
	}
	for _, p := range left {
		if err := Remove(p); err != nil {
			return nil, fmt.Errorf("spare namespaces: leftover: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Spares{dir: dir, ready: make(chan string, n-1), retire: make(chan string, 16), cancel: cancel, done: make(chan struct{})}
	go s.fill(ctx)
	return s, nil
}

// Close stops making spares and removes those not taken.
func (s *Spares) Close() {
	s.cancel()
	<-s.done
	s.removeRetired()
}

// removeRetired removes the retired spares' mounts waiting in s.retire.
func (s *Spares) removeRetired() {
	for {
		select {
		case p := <-s.retire:
			Remove(p)
		default:
			return
		}
	}
}

// fill makes namespaces while the pool has room. When the context ends,
// the spares not taken are removed (a Take that raced with that made its
// own or got one that is then its).
func (s *Spares) fill(ctx context.Context) {
	defer close(s.done)
	defer s.removeRetired()
	defer func() {
		for {
			select {
			case p := <-s.ready:
				Remove(p)
			default:
				return
			}
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		p := filepath.Join(s.dir, strconv.Itoa(seq))
		if err := Create(p); err != nil {
			// Nothing to hand out: Take makes its own, and says why.
			slog.Warn("spare network namespace", "err", err)
			<-ctx.Done()
			return
		}
		for handed := false; !handed; {
			select {
			case s.ready <- p:
				handed = true
			case r := <-s.retire:
				Remove(r)
			case <-ctx.Done():
				Remove(p)
				return
			}
		}
	}
}

// Take puts a fresh network namespace, lo up, on path (which must not
// exist): a spare if one is ready, else a new one.
func (s *Spares) Take(path string) error {
	var p string
	select {
	case p = <-s.ready:
	default:
		return Create(path)
	}
	err := move(p, path)
	if err != nil {
		Remove(p)
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	// The namespace lives on at path; the pool's mount of it goes later
	// (or now, if the filling goroutine is behind). A crash in between
	// leaves it to the next NewSpares, which removes what it finds.
	select {
	case s.retire <- p:
	default:
		if err := Remove(p); err != nil {
			return fmt.Errorf("create netns %s: %w", path, err)
		}
	}
	return nil
}

// move binds the namespace at from on a new file at path; the caller
// removes from.
func move(from, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(from, path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("bind mount %s: %w", from, err)
	}
	return nil
}
