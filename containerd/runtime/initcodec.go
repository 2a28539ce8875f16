package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// The init's configuration travels on fd 3 in a small binary form (a
// uint32 length, then the fields below in a fixed order), not as JSON:
// encoding/json's first decode in a process builds its reflection caches
// and faults in its code, which cost the init 2-3 ms of its 10 before it
// could start on the container. It carries the initConfig and, of the
// spec, exactly what the init reads (initSpec's fields that init.go,
// mount.go and caps.go use); a field the init starts to use must be added
// to encodeInitConfig and decodeInitConfig, and to
// TestInitConfigRoundTrip's full config.

// maxInitConfig bounds what the init accepts on its pipe.
const maxInitConfig = 16 << 20

type initWriter struct{ b []byte }

func (w *initWriter) uint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *initWriter) int(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *initWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}
func (w *initWriter) bytes(b []byte) { w.uint(uint64(len(b))); w.b = append(w.b, b...) }
func (w *initWriter) str(s string)   { w.uint(uint64(len(s))); w.b = append(w.b, s...) }

// strs writes nil and empty apart (count+1, 0 for nil).
func (w *initWriter) strs(ss []string) {
	if ss == nil {
		w.uint(0)
		return
	}
	w.uint(uint64(len(ss)) + 1)
	for _, s := range ss {
		w.str(s)
	}
}

func (w *initWriter) optUint(p *uint32) {
	w.bool(p != nil)
	if p != nil {
		w.uint(uint64(*p))
	}
}

// encodeInitConfig renders cfg (its Spec being initSpec's) with its length
// in front.
func encodeInitConfig(cfg *initConfig) ([]byte, error) {
	w := &initWriter{b: make([]byte, 4, 4096)}
	w.str(cfg.Mode)
	w.str(cfg.Rootfs)
	w.str(cfg.Bundle)
	w.bool(cfg.Fifo)
	w.bool(cfg.UserNS)
	w.bool(cfg.AttachRootfs)
	w.str(cfg.Console)
	w.bool(cfg.NewConsole)
	w.bool(cfg.NoPivot)
	w.str(cfg.MountNS)
	w.str(cfg.PidNS)
	w.bool(cfg.NewCgroupNS)
	w.int(int64(cfg.CgroupMode))
	w.str(cfg.CgroupRoot)
	w.str(cfg.CgroupPath)
	w.bool(cfg.Seccomp != nil)
	if cfg.Seccomp != nil {
		b, err := cfg.Seccomp.MarshalBinary()
		if err != nil {
			return nil, err
		}
		w.bytes(b)
	}
	s := cfg.Spec
	if s == nil || s.Process == nil {
		return nil, errors.New("init config: no process")
	}
	w.str(s.Hostname)
	w.str(s.Domainname)
	w.bool(s.Root != nil)
	if s.Root != nil {
		w.str(s.Root.Path)
		w.bool(s.Root.Readonly)
	}
	p := s.Process
	w.bool(p.Terminal)
	w.uint(uint64(p.User.UID))
	w.uint(uint64(p.User.GID))
	w.optUint(p.User.Umask)
	w.uint(uint64(len(p.User.AdditionalGids)))
	for _, g := range p.User.AdditionalGids {
		w.uint(uint64(g))
	}
	w.strs(p.Args)
	w.strs(p.Env)
	w.str(p.Cwd)
	w.bool(p.Capabilities != nil)
	if c := p.Capabilities; c != nil {
		for _, set := range [][]string{c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient} {
			w.strs(set)
		}
	}
	w.uint(uint64(len(p.Rlimits)))
	for _, r := range p.Rlimits {
		w.str(r.Type)
		w.uint(r.Hard)
		w.uint(r.Soft)
	}
	w.bool(p.NoNewPrivileges)
	w.bool(p.OOMScoreAdj != nil)
	if p.OOMScoreAdj != nil {
		w.int(int64(*p.OOMScoreAdj))
	}
	w.uint(uint64(len(s.Mounts)))
	for _, m := range s.Mounts {
		w.str(m.Destination)
		w.str(m.Type)
		w.str(m.Source)
		w.strs(m.Options)
	}
	l := s.Linux
	w.bool(l != nil)
	if l != nil {
		w.uint(uint64(len(l.Devices)))
		for _, d := range l.Devices {
			w.str(d.Path)
			w.str(d.Type)
			w.int(d.Major)
			w.int(d.Minor)
			w.bool(d.FileMode != nil)
			if d.FileMode != nil {
				w.uint(uint64(*d.FileMode))
			}
			w.optUint(d.UID)
			w.optUint(d.GID)
		}
		w.str(l.RootfsPropagation)
		keys := make([]string, 0, len(l.Sysctl))
		for k := range l.Sysctl {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.uint(uint64(len(keys)))
		for _, k := range keys {
			w.str(k)
			w.str(l.Sysctl[k])
		}
		w.strs(l.ReadonlyPaths)
		w.strs(l.MaskedPaths)
	}
	if len(w.b)-4 > maxInitConfig {
		return nil, fmt.Errorf("init config: %d bytes", len(w.b)-4)
	}
	binary.LittleEndian.PutUint32(w.b, uint32(len(w.b)-4))
	return w.b, nil
}

type initReader struct {
	b   []byte
	err error
}

func (r *initReader) fail() {
	if r.err == nil {
		r.err = errors.New("init config: truncated or malformed")
	}
	r.b = nil
}

func (r *initReader) uint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *initReader) int() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *initReader) bool() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail()
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *initReader) bytes() []byte {
	n := r.uint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *initReader) str() string { return string(r.bytes()) }

func (r *initReader) strs() []string {
	n := r.uint()
	if n == 0 {
		return nil
	}
	if n-1 > uint64(len(r.b)) { // each string takes a byte at least
		r.fail()
		return nil
	}
	ss := make([]string, n-1)
	for i := range ss {
		ss[i] = r.str()
	}
	return ss
}

func (r *initReader) count() int {
	n := r.uint()
	if n > uint64(len(r.b)) { // each element takes a byte at least
		r.fail()
		return 0
	}
	return int(n)
}

func (r *initReader) optUint() *uint32 {
	if !r.bool() {
		return nil
	}
	v := uint32(r.uint())
	return &v
}

// decodeInitConfig reads what encodeInitConfig wrote (without the length).
func decodeInitConfig(b []byte) (*initConfig, error) {
	r := &initReader{b: b}
	cfg := &initConfig{}
	cfg.Mode = r.str()
	cfg.Rootfs = r.str()
	cfg.Bundle = r.str()
	cfg.Fifo = r.bool()
	cfg.UserNS = r.bool()
	cfg.AttachRootfs = r.bool()
	cfg.Console = r.str()
	cfg.NewConsole = r.bool()
	cfg.NoPivot = r.bool()
	cfg.MountNS = r.str()
	cfg.PidNS = r.str()
	cfg.NewCgroupNS = r.bool()
	cfg.CgroupMode = cgroups.Mode(r.int())
	cfg.CgroupRoot = r.str()
	cfg.CgroupPath = r.str()
	if r.bool() {
		cfg.Seccomp = &seccomp.Program{}
		if b := r.bytes(); r.err == nil {
			if err := cfg.Seccomp.UnmarshalBinary(b); err != nil {
				return nil, fmt.Errorf("init config: %w", err)
			}
		}
	}
	s := &specs.Spec{Process: &specs.Process{}}
	cfg.Spec = s
	s.Hostname = r.str()
	s.Domainname = r.str()
	if r.bool() {
		s.Root = &specs.Root{Path: r.str(), Readonly: r.bool()}
	}
	p := s.Process
	p.Terminal = r.bool()
	p.User.UID = uint32(r.uint())
	p.User.GID = uint32(r.uint())
	p.User.Umask = r.optUint()
	if n := r.count(); n > 0 {
		p.User.AdditionalGids = make([]uint32, n)
		for i := range p.User.AdditionalGids {
			p.User.AdditionalGids[i] = uint32(r.uint())
		}
	}
	p.Args = r.strs()
	p.Env = r.strs()
	p.Cwd = r.str()
	if r.bool() {
		p.Capabilities = &specs.LinuxCapabilities{}
		c := p.Capabilities
		for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Inheritable, &c.Permitted, &c.Ambient} {
			*set = r.strs()
		}
	}
	if n := r.count(); n > 0 {
		p.Rlimits = make([]specs.POSIXRlimit, n)
		for i := range p.Rlimits {
			p.Rlimits[i] = specs.POSIXRlimit{Type: r.str(), Hard: r.uint(), Soft: r.uint()}
		}
	}
	p.NoNewPrivileges = r.bool()
	if r.bool() {
		v := int(r.int())
		p.OOMScoreAdj = &v
	}
	if n := r.count(); n > 0 {
		s.Mounts = make([]specs.Mount, n)
		for i := range s.Mounts {
			s.Mounts[i] = specs.Mount{Destination: r.str(), Type: r.str(), Source: r.str(), Options: r.strs()}
		}
	}
	if r.bool() {
		l := &specs.Linux{}
		s.Linux = l
		if n := r.count(); n > 0 {
			l.Devices = make([]specs.LinuxDevice, n)
			for i := range l.Devices {
				d := &l.Devices[i]
				d.Path, d.Type, d.Major, d.Minor = r.str(), r.str(), r.int(), r.int()
				if r.bool() {
					m := os.FileMode(r.uint())
					d.FileMode = &m
				}
				d.UID, d.GID = r.optUint(), r.optUint()
			}
		}
		l.RootfsPropagation = r.str()
		if n := r.count(); n > 0 {
			l.Sysctl = make(map[string]string, n)
			for i := 0; i < n; i++ {
				k := r.str()
				l.Sysctl[k] = r.str()
			}
		}
		l.ReadonlyPaths = r.strs()
		l.MaskedPaths = r.strs()
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("init config: %d bytes left over", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return cfg, nil
}
