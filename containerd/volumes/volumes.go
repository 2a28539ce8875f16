// Package volumes is the engine's local volume driver, laid out as
// Docker's: a volume is a directory <root>/<name>/_data, its record
// <root>/<name>/volume.json (written with the engine's atomic-write helper).
// A volume created with --opt type/device/o is mounted over its _data
// directory while it has users and unmounted when the last one goes; the
// users are in the record, so that a daemon restart keeps the count.
package volumes

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shoal-project/shoal/containerd/atomicfile"
)

// Error classes, for the API's statuses.
var (
	ErrNotFound = errors.New("no such volume")
	ErrInUse    = errors.New("volume is in use")
	ErrInvalid  = errors.New("invalid volume")
)

// AnonymousLabel marks a volume made for one container without a name
// (-v /data, an image's VOLUME), as Docker marks it; prune removes only
// those unless asked for all.
const AnonymousLabel = "com.docker.volume.anonymous"

// DriverLocal is the one driver.
const DriverLocal = "local"

// Docker's rule for local volume names.
var namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

// Volume is one volume's record.
type Volume struct {
	Name      string            `json:"name"`
	Driver    string            `json:"driver"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"labels,omitempty"`
	Options   map[string]string `json:"options,omitempty"`
	// Users are the containers that hold the volume (its reference count).
	Users []string `json:"users,omitempty"`
	// RemoveWith is the container whose removal removes this volume too
	// (an anonymous volume of a --rm container).
	RemoveWith string `json:"remove_with,omitempty"`
	// Mountpoint is the host directory that containers bind.
	Mountpoint string `json:"-"`
}

// Anonymous reports whether v was made without a name.
func (v Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// Store holds the volumes under one root.
type Store struct {
	root string
	mu   sync.Mutex
	vols map[string]*Volume
}

// Open loads the volumes under root, creating it.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o701); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	s := &Store{root: root, vols: map[string]*Volume{}}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !namePattern().MatchString(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "volume.json"))
		if err != nil {
			// A create that crashed before its record: not a volume.
			continue
		}
		var v Volume
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("volumes: record of %s: %w", e.Name(), err)
		}
		v.Mountpoint = s.dataDir(v.Name)
		s.vols[v.Name] = &v
	}
	return s, nil
}

func (s *Store) dataDir(name string) string { return filepath.Join(s.root, name, "_data") }

// ValidateName checks a volume name as Docker does.
func ValidateName(name string) error {
	if !namePattern().MatchString(name) {
		return fmt.Errorf("%w: %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed", ErrInvalid, name)
	}
	return nil
}

// Create makes a volume. An empty name makes an anonymous one (a random
// name and the anonymous label). Creating a volume that exists returns it
// unchanged when driver and options agree (as Docker), created is false.
// Options are checked by mounting them once: a volume that cannot be
// mounted is not made.
func (s *Store) Create(name, driver string, labels, opts map[string]string) (v Volume, created bool, err error) {
	if driver == "" {
		driver = DriverLocal
	}
	if driver != DriverLocal {
		return Volume{}, false, fmt.Errorf("%w: volume driver %q is not supported (only %q)", ErrInvalid, driver, DriverLocal)
	}
	if name == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		name = hex.EncodeToString(b)
		labels = cloneMap(labels)
		labels[AnonymousLabel] = ""
	} else if err := ValidateName(name); err != nil {
		return Volume{}, false, err
	}
	mo, err := parseOptions(opts)
	if err != nil {
		return Volume{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.vols[name]; ok {
		if len(opts) > 0 && !mapsEqual(opts, old.Options) {
			return Volume{}, false, fmt.Errorf("%w: volume %s exists with other options", ErrInvalid, name)
		}
		return *old, false, nil
	}
	dir := filepath.Join(s.root, name)
	if err := os.Mkdir(dir, 0o701); err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	data := s.dataDir(name)
	if err := os.Mkdir(data, 0o755); err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	if mo != nil {
		if err := mo.mount(data); err != nil {
			return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
		}
		if err := unmount(data); err != nil {
			return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
		}
	}
	nv := &Volume{Name: name, Driver: driver, CreatedAt: time.Now().UTC().Truncate(time.Second),
		Labels: cloneMap(labels), Options: cloneMap(opts), Mountpoint: data}
	if err := s.save(nv); err != nil {
		return Volume{}, false, err
	}
	s.vols[name] = nv
	return *nv, true, nil
}

func (s *Store) save(v *Volume) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.root, v.Name, "volume.json"), b, 0o600)
}

// Get returns a volume by name.
func (s *Store) Get(name string) (Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return Volume{}, fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	return *v, nil
}

// List returns every volume, by name.
func (s *Store) List() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Volume, 0, len(s.vols))
	for _, v := range s.vols {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Remove removes a volume. inUse names a container that still refers to it
// (the engine's containers, stopped ones too, as Docker), or "": a volume in
// use is removed only with force when no container holds it mounted.
func (s *Store) Remove(name string, force bool, inUse string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		if force {
			return nil
		}
		return fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	if len(v.Users) > 0 || (inUse != "" && !force) {
		users := inUse
		if users == "" {
			users = v.Users[0]
		}
		return fmt.Errorf("remove %s: %w - [%s]", name, ErrInUse, users) // dockerd's words
	}
	if err := os.RemoveAll(filepath.Join(s.root, name)); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	delete(s.vols, name)
	return atomicfile.SyncDir(s.root)
}

// Mount takes a reference on a volume for user (a container) and returns
// the host directory to bind. The first user mounts a volume that has
// mount options; taking a reference twice is one reference.
func (s *Store) Mount(name, user string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return "", fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	if slices.Contains(v.Users, user) {
		return v.Mountpoint, nil
	}
	mo, err := parseOptions(v.Options)
	if err != nil {
		return "", err
	}
	// After a reboot the record still has users but nothing is mounted.
	if mo != nil && !isMountpoint(v.Mountpoint) {
		if err := mo.mount(v.Mountpoint); err != nil {
			return "", fmt.Errorf("mount volume %s: %w", name, err)
		}
	}
	v.Users = append(v.Users, user)
	if err := s.save(v); err != nil {
		v.Users = v.Users[:len(v.Users)-1]
		if mo != nil && len(v.Users) == 0 {
			_ = unmount(v.Mountpoint)
		}
		return "", err
	}
	return v.Mountpoint, nil
}

// Unmount drops user's reference; the last one unmounts the volume's
// mount options. A volume or user not known is no error: a release may be
// repeated after a crash.
func (s *Store) Unmount(name, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok || !slices.Contains(v.Users, user) {
		return nil
	}
	v.Users = slices.DeleteFunc(v.Users, func(u string) bool { return u == user })
	if len(v.Users) == 0 && len(v.Options) > 0 && isMountpoint(v.Mountpoint) {
		if err := unmount(v.Mountpoint); err != nil {
			return fmt.Errorf("unmount volume %s: %w", name, err)
		}
	}
	return s.save(v)
}

// SetRemoveWith marks an anonymous volume to go with container id.
func (s *Store) SetRemoveWith(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	v.RemoveWith = id
	return s.save(v)
}

// UsedBy returns the volumes that user holds.
func (s *Store) UsedBy(user string) []Volume {
	var out []Volume
	for _, v := range s.List() {
		if slices.Contains(v.Users, user) {
			out = append(out, v)
		}
	}
	return out
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
