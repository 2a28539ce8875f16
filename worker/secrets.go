package worker

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/api"
)

// Secrets holds the secrets and configs the node's assigned tasks refer to,
// as the dispatcher sent them with the tasks. They live in memory and, for
// a task's container, as files on a tmpfs (TaskFiles): never on disk. An
// entry goes when no assigned task refers to it any more.
type Secrets struct {
	mu      sync.Mutex
	secrets map[string]*api.Secret
	configs map[string]*api.Config
	byTask  map[string][]string // task ID -> the keys of what it refers to
	refs    map[string]int      // key ("s/ID", "c/ID") -> tasks referring to it
}

// NewSecrets makes an empty store.
func NewSecrets() *Secrets {
	return &Secrets{secrets: map[string]*api.Secret{}, configs: map[string]*api.Config{},
		byTask: map[string][]string{}, refs: map[string]int{}}
}

// set records what task refers to, replacing what it referred to before.
func (s *Secrets) set(task string, secrets []*api.Secret, configs []*api.Config) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for _, x := range secrets {
		s.secrets[x.GetId()] = x
		keys = append(keys, "s/"+x.GetId())
	}
	for _, x := range configs {
		s.configs[x.GetId()] = x
		keys = append(keys, "c/"+x.GetId())
	}
	for _, k := range keys {
		s.refs[k]++
	}
	s.dropLocked(task)
	if len(keys) > 0 {
		s.byTask[task] = keys
	}
}

// drop forgets what task referred to.
func (s *Secrets) drop(task string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(task)
}

func (s *Secrets) dropLocked(task string) {
	for _, k := range s.byTask[task] {
		if s.refs[k]--; s.refs[k] > 0 {
			continue
		}
		delete(s.refs, k)
		kind, id, _ := strings.Cut(k, "/")
		if kind == "s" {
			delete(s.secrets, id)
		} else {
			delete(s.configs, id)
		}
	}
	delete(s.byTask, task)
}

// secret returns the secret id, or nil.
func (s *Secrets) secret(id string) *api.Secret {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.secrets[id]
}

// config returns the config id, or nil.
func (s *Secrets) config(id string) *api.Config {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configs[id]
}

// SecretsDir is where a task's secret and config files are written, under
// root (a tmpfs).
func SecretsDir(root, taskID string) string { return filepath.Join(root, taskID) }

// TaskFiles writes the secrets and configs task t refers to into its
// directory under root and returns the binds that show them in its
// container, read-only: a secret at /run/secrets/TARGET (or TARGET if
// absolute), a config at TARGET ("/"+TARGET if relative), as Docker. Each
// file has the reference's owner and mode (default root, 0444). On error
// nothing is left behind.
func TaskFiles(root string, t *api.Task, src *Secrets) (binds []string, err error) {
	cs := t.GetSpec().GetContainer()
	if len(cs.GetSecrets())+len(cs.GetConfigs()) == 0 {
		return nil, nil
	}
	if root == "" {
		return nil, fmt.Errorf("%w: task %s uses secrets or configs but this node has no place for them", ErrInvalidArgument, t.GetId())
	}
	dir := SecretsDir(root, t.GetId())
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("task %s: secrets: %w", t.GetId(), err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("task %s: secrets: %w", t.GetId(), err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	targets := map[string]bool{}
	add := func(n int, what, name string, data []byte, f *api.FileTarget, target string) error {
		if targets[target] {
			return fmt.Errorf("%w: task %s: two secrets or configs at %s", ErrInvalidArgument, t.GetId(), target)
		}
		targets[target] = true
		file := filepath.Join(dir, fmt.Sprintf("%s%d", what[:1], n))
		if err := writeOwned(file, data, f); err != nil {
			return fmt.Errorf("task %s: %s %s: %w", t.GetId(), what, name, err)
		}
		binds = append(binds, file+":"+target+":ro")
		return nil
	}
	for i, r := range cs.GetSecrets() {
		s := src.secret(r.GetSecretId())
		if s == nil {
			return nil, fmt.Errorf("%w: task %s: secret %s (%s) was not sent to this node", ErrInvalidArgument, t.GetId(), r.GetSecretName(), r.GetSecretId())
		}
		target := r.GetFile().GetName()
		if target == "" {
			target = r.GetSecretName()
		}
		if !path.IsAbs(target) {
			target = path.Join("/run/secrets", target)
		}
		if err := add(i, "secret", r.GetSecretName(), s.GetSpec().GetData(), r.GetFile(), path.Clean(target)); err != nil {
			return nil, err
		}
	}
	for i, r := range cs.GetConfigs() {
		c := src.config(r.GetConfigId())
		if c == nil {
			return nil, fmt.Errorf("%w: task %s: config %s (%s) was not sent to this node", ErrInvalidArgument, t.GetId(), r.GetConfigName(), r.GetConfigId())
		}
		target := r.GetFile().GetName()
		if target == "" {
			target = r.GetConfigName()
		}
		if err := add(i, "config", r.GetConfigName(), c.GetSpec().GetData(), r.GetFile(), path.Clean("/"+target)); err != nil {
			return nil, err
		}
	}
	return binds, nil
}

// writeOwned writes data to a new file with f's owner and mode.
func writeOwned(file string, data []byte, f *api.FileTarget) error {
	mode := os.FileMode(f.GetMode()) & os.ModePerm
	if f == nil {
		mode = 0o444
	}
	uid, gid, err := owner(f)
	if err != nil {
		return err
	}
	fd, err := unix.Open(file, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	out := os.NewFile(uintptr(fd), file)
	_, err = out.Write(data)
	err = errors.Join(err, out.Chown(uid, gid), out.Chmod(mode), out.Close())
	return err
}

// owner parses a reference's numeric uid and gid ("" is 0): names would
// mean the node's users, not the container's.
func owner(f *api.FileTarget) (uid, gid int, err error) {
	parse := func(what, s string) (int, error) {
		if s == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return 0, fmt.Errorf("%w: %s %q is not a number", ErrInvalidArgument, what, s)
		}
		return int(n), nil
	}
	if uid, err = parse("uid", f.GetUid()); err != nil {
		return 0, 0, err
	}
	gid, err = parse("gid", f.GetGid())
	return uid, gid, err
}
