package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/atomicfile"
)

// SpecFile is shoal's other addition to an OCI bundle (with
// SeccompProgramFile): config.json's spec in a binary form, so that the
// shim, a fresh process per container, does not decode config.json. That
// process's first encoding/json decode of a spec builds the reflection
// caches of the whole runtime-spec type graph (encoding/json builds every
// field's encoder while decoding, too): about 2 ms of the shim's 9 ms of
// create on these machines (SHOAL_RUNTIME_TRACE's "spec" stage), against
// tens of microseconds for this form. It holds the SHA-256 of the
// config.json it was made from, then the fields codeSpec walks. The daemon
// writes it only when it decodes to exactly what encoding/json makes of
// config.json, so a spec with a field codeSpec does not carry is read from
// config.json instead; the runtime refuses one made for another config.json.
const SpecFile = "config.bin"

// WriteBundleSpec records in bundle the binary form of config (the bytes
// of bundle/config.json), or removes an earlier one when config's spec has
// anything codeSpec does not carry: the form must decode to exactly what
// encoding/json makes of config.
func WriteBundleSpec(bundle string, config []byte) error {
	path := filepath.Join(bundle, SpecFile)
	var want specs.Spec
	err := json.Unmarshal(config, &want)
	var b []byte
	if err == nil {
		b = encodeSpec(&want)
		var got *specs.Spec
		if got, err = decodeSpec(b); err == nil && !reflect.DeepEqual(got, &want) {
			err = errors.New("not carried whole")
		}
	}
	if err != nil {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fmt.Errorf("spec file: %w", rerr)
		}
		return nil
	}
	sum := sha256.Sum256(config)
	if err := atomicfile.Replace(path, append(sum[:], b...), 0o600); err != nil {
		return fmt.Errorf("spec file: %w", err)
	}
	return nil
}

// bundleSpec returns the spec of config (the bytes of bundle/config.json)
// from the bundle's SpecFile, or nil when there is none.
func bundleSpec(bundle string, config []byte) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, SpecFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, SpecFile, err)
	}
	sum := sha256.Sum256(config)
	if len(b) < len(sum) || !bytes.Equal(b[:len(sum)], sum[:]) {
		return nil, fmt.Errorf("%w: %s was not made from this config.json", ErrInvalid, SpecFile)
	}
	s, err := decodeSpec(b[len(sum):])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, SpecFile, err)
	}
	return s, nil
}

func encodeSpec(s *specs.Spec) []byte {
	w := &specWriter{initWriter{b: make([]byte, 0, 4096)}}
	codeSpec(w, s)
	return w.b
}

func decodeSpec(b []byte) (*specs.Spec, error) {
	r := &specReader{initReader{b: b}}
	s := new(specs.Spec)
	codeSpec(r, s)
	if r.err == nil && len(r.b) != 0 {
		return nil, errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}

// A coder writes or reads one field at a time, so that codeSpec is the
// one description of the form for both directions.
type coder interface {
	reading() bool
	str(*string)
	u64(*uint64)
	i64(*int64)
	flag(*bool)
	// present is whether an optional part follows: have, when writing.
	present(have bool) bool
	// length is a slice's or map's length, -1 for nil.
	length(n int) int
}

type specWriter struct{ initWriter }

func (w *specWriter) reading() bool       { return false }
func (w *specWriter) str(p *string)       { w.initWriter.str(*p) }
func (w *specWriter) u64(p *uint64)       { w.uint(*p) }
func (w *specWriter) i64(p *int64)        { w.int(*p) }
func (w *specWriter) flag(p *bool)        { w.bool(*p) }
func (w *specWriter) present(h bool) bool { w.bool(h); return h }
func (w *specWriter) length(n int) int    { w.uint(uint64(n + 1)); return n }

type specReader struct{ initReader }

func (r *specReader) reading() bool     { return true }
func (r *specReader) str(p *string)     { *p = r.initReader.str() }
func (r *specReader) u64(p *uint64)     { *p = r.uint() }
func (r *specReader) i64(p *int64)      { *p = r.int() }
func (r *specReader) flag(p *bool)      { *p = r.bool() }
func (r *specReader) present(bool) bool { return r.bool() }
func (r *specReader) length(int) int {
	n := r.uint()
	if n == 0 {
		return -1
	}
	if n-1 > uint64(len(r.b)) { // each element takes a byte at least
		r.fail()
		return -1
	}
	return int(n - 1)
}

func codeUint[T ~uint | ~uint16 | ~uint32 | ~uint64](c coder, p *T) {
	v := uint64(*p)
	c.u64(&v)
	*p = T(v)
}

func codeInt[T ~int | ~int64](c coder, p *T) {
	v := int64(*p)
	c.i64(&v)
	*p = T(v)
}

func codeStr[T ~string](c coder, p *T) {
	v := string(*p)
	c.str(&v)
	*p = T(v)
}

func codePtr[T any](c coder, p **T, each func(coder, *T)) {
	if !c.present(*p != nil) {
		return
	}
	if c.reading() {
		*p = new(T)
	}
	each(c, *p)
}

// codeList codes a slice, nil apart from empty (JSON's null and []).
func codeList[T any](c coder, p *[]T, each func(coder, *T)) {
	n := -1
	if *p != nil {
		n = len(*p)
	}
	n = c.length(n)
	if c.reading() {
		if n < 0 {
			*p = nil
			return
		}
		*p = make([]T, n)
	}
	for i := range *p {
		each(c, &(*p)[i])
	}
}

func codeStrs[T ~string](c coder, p *[]T) { codeList(c, p, codeStr[T]) }

func codeMap(c coder, p *map[string]string) {
	if c.reading() {
		n := c.length(0)
		if n < 0 {
			*p = nil
			return
		}
		*p = make(map[string]string, n)
		for i := 0; i < n; i++ {
			var k, v string
			c.str(&k)
			c.str(&v)
			(*p)[k] = v
		}
		return
	}
	if *p == nil {
		c.length(-1)
		return
	}
	keys := make([]string, 0, len(*p))
	for k := range *p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	c.length(len(keys))
	for _, k := range keys {
		v := (*p)[k]
		c.str(&k)
		c.str(&v)
	}
}

func codeSpec(c coder, s *specs.Spec) {
	c.str(&s.Version)
	codePtr(c, &s.Process, codeProcess)
	codePtr(c, &s.Root, func(c coder, r *specs.Root) { c.str(&r.Path); c.flag(&r.Readonly) })
	c.str(&s.Hostname)
	c.str(&s.Domainname)
	codeList(c, &s.Mounts, func(c coder, m *specs.Mount) {
		c.str(&m.Destination)
		c.str(&m.Type)
		c.str(&m.Source)
		codeStrs(c, &m.Options)
		codeList(c, &m.UIDMappings, codeIDMapping)
		codeList(c, &m.GIDMappings, codeIDMapping)
	})
	codePtr(c, &s.Hooks, func(c coder, h *specs.Hooks) {
		for _, l := range []*[]specs.Hook{&h.Prestart, &h.CreateRuntime, &h.CreateContainer, &h.StartContainer, &h.Poststart, &h.Poststop} {
			codeList(c, l, func(c coder, h *specs.Hook) {
				c.str(&h.Path)
				codeStrs(c, &h.Args)
				codeStrs(c, &h.Env)
				codePtr(c, &h.Timeout, codeInt[int])
			})
		}
	})
	codeMap(c, &s.Annotations)
	codePtr(c, &s.Linux, codeLinux)
}

func codeProcess(c coder, p *specs.Process) {
	c.flag(&p.Terminal)
	codeUint(c, &p.User.UID)
	codeUint(c, &p.User.GID)
	codePtr(c, &p.User.Umask, codeUint[uint32])
	codeList(c, &p.User.AdditionalGids, codeUint[uint32])
	codeStrs(c, &p.Args)
	codeStrs(c, &p.Env)
	c.str(&p.Cwd)
	codePtr(c, &p.Capabilities, func(c coder, k *specs.LinuxCapabilities) {
		for _, set := range []*[]string{&k.Bounding, &k.Effective, &k.Inheritable, &k.Permitted, &k.Ambient} {
			codeStrs(c, set)
		}
	})
	codeList(c, &p.Rlimits, func(c coder, r *specs.POSIXRlimit) {
		c.str(&r.Type)
		c.u64(&r.Hard)
		c.u64(&r.Soft)
	})
	c.flag(&p.NoNewPrivileges)
	c.str(&p.ApparmorProfile)
	codePtr(c, &p.OOMScoreAdj, codeInt[int])
	c.str(&p.SelinuxLabel)
}

func codeIDMapping(c coder, m *specs.LinuxIDMapping) {
	codeUint(c, &m.ContainerID)
	codeUint(c, &m.HostID)
	codeUint(c, &m.Size)
}

func codeLinux(c coder, l *specs.Linux) {
	codeList(c, &l.UIDMappings, codeIDMapping)
	codeList(c, &l.GIDMappings, codeIDMapping)
	codeMap(c, &l.Sysctl)
	codePtr(c, &l.Resources, codeResources)
	c.str(&l.CgroupsPath)
	codeList(c, &l.Namespaces, func(c coder, n *specs.LinuxNamespace) {
		codeStr(c, &n.Type)
		c.str(&n.Path)
	})
	codeList(c, &l.Devices, func(c coder, d *specs.LinuxDevice) {
		c.str(&d.Path)
		c.str(&d.Type)
		c.i64(&d.Major)
		c.i64(&d.Minor)
		codePtr(c, &d.FileMode, codeUint)
		codePtr(c, &d.UID, codeUint[uint32])
		codePtr(c, &d.GID, codeUint[uint32])
	})
	codePtr(c, &l.Seccomp, func(c coder, s *specs.LinuxSeccomp) {
		codeStr(c, &s.DefaultAction)
		codePtr(c, &s.DefaultErrnoRet, codeUint[uint])
		codeStrs(c, &s.Architectures)
		codeStrs(c, &s.Flags)
		c.str(&s.ListenerPath)
		c.str(&s.ListenerMetadata)
		codeList(c, &s.Syscalls, func(c coder, y *specs.LinuxSyscall) {
			codeStrs(c, &y.Names)
			codeStr(c, &y.Action)
			codePtr(c, &y.ErrnoRet, codeUint[uint])
			codeList(c, &y.Args, func(c coder, a *specs.LinuxSeccompArg) {
				codeUint(c, &a.Index)
				c.u64(&a.Value)
				c.u64(&a.ValueTwo)
				codeStr(c, &a.Op)
			})
		})
	})
	c.str(&l.RootfsPropagation)
	codeStrs(c, &l.MaskedPaths)
	codeStrs(c, &l.ReadonlyPaths)
	c.str(&l.MountLabel)
}

func codeResources(c coder, r *specs.LinuxResources) {
	codeList(c, &r.Devices, func(c coder, d *specs.LinuxDeviceCgroup) {
		c.flag(&d.Allow)
		c.str(&d.Type)
		codePtr(c, &d.Major, codeInt[int64])
		codePtr(c, &d.Minor, codeInt[int64])
		c.str(&d.Access)
	})
	codePtr(c, &r.Memory, func(c coder, m *specs.LinuxMemory) {
		for _, p := range []**int64{&m.Limit, &m.Reservation, &m.Swap, &m.Kernel, &m.KernelTCP} {
			codePtr(c, p, codeInt[int64])
		}
		codePtr(c, &m.Swappiness, codeUint[uint64])
		for _, p := range []**bool{&m.DisableOOMKiller, &m.UseHierarchy, &m.CheckBeforeUpdate} {
			codePtr(c, p, func(c coder, b *bool) { c.flag(b) })
		}
	})
	codePtr(c, &r.CPU, func(c coder, k *specs.LinuxCPU) {
		codePtr(c, &k.Shares, codeUint[uint64])
		codePtr(c, &k.Quota, codeInt[int64])
		codePtr(c, &k.Burst, codeUint[uint64])
		codePtr(c, &k.Period, codeUint[uint64])
		codePtr(c, &k.RealtimeRuntime, codeInt[int64])
		codePtr(c, &k.RealtimePeriod, codeUint[uint64])
		c.str(&k.Cpus)
		c.str(&k.Mems)
		codePtr(c, &k.Idle, codeInt[int64])
	})
	codePtr(c, &r.Pids, func(c coder, p *specs.LinuxPids) { codePtr(c, &p.Limit, codeInt[int64]) })
	codePtr(c, &r.BlockIO, func(c coder, b *specs.LinuxBlockIO) {
		codePtr(c, &b.Weight, codeUint[uint16])
		codePtr(c, &b.LeafWeight, codeUint[uint16])
		codeList(c, &b.WeightDevice, func(c coder, d *specs.LinuxWeightDevice) {
			c.i64(&d.Major)
			c.i64(&d.Minor)
			codePtr(c, &d.Weight, codeUint[uint16])
			codePtr(c, &d.LeafWeight, codeUint[uint16])
		})
		for _, l := range []*[]specs.LinuxThrottleDevice{&b.ThrottleReadBpsDevice, &b.ThrottleWriteBpsDevice, &b.ThrottleReadIOPSDevice, &b.ThrottleWriteIOPSDevice} {
			codeList(c, l, func(c coder, d *specs.LinuxThrottleDevice) {
				c.i64(&d.Major)
				c.i64(&d.Minor)
				c.u64(&d.Rate)
			})
		}
	})
	codeList(c, &r.HugepageLimits, func(c coder, h *specs.LinuxHugepageLimit) {
		c.str(&h.Pagesize)
		c.u64(&h.Limit)
	})
	codePtr(c, &r.Network, func(c coder, n *specs.LinuxNetwork) {
		codePtr(c, &n.ClassID, codeUint[uint32])
		codeList(c, &n.Priorities, func(c coder, p *specs.LinuxInterfacePriority) {
			c.str(&p.Name)
			codeUint(c, &p.Priority)
		})
	})
	codeMap(c, &r.Unified)
}
