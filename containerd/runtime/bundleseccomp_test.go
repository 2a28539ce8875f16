package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// mkdirPolicy allows everything but mkdir(2) and mkdirat(2), which fail
// with EPERM, whereas Docker's default policy (the bundle's config.json)
// allows them.
func mkdirPolicy() *specs.LinuxSeccomp {
	eperm := uint(1)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
	}
}

func TestBundleSeccompProgramIsUsed(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	bundle := newBundle(t, nil, "sh", "-c", `mkdir /tmp/d 2>/dev/null; echo rc=$?; rmdir /tmp/d 2>/dev/null; true`)
	config, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		o := newOutput(t)
		code, err := r.Run(ctx(t), "bpf", bundle, o.opts())
		stdout, stderr := o.String()
		if err != nil || code != 0 {
			t.Fatalf("run: %d %v %q", code, err, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	// Without a program file the runtime compiles config.json's policy,
	// which allows mkdir.
	if got := run(); got != "rc=0" {
		t.Fatalf("without a program file: %q, want rc=0", got)
	}
	// A program compiled for this config.json is loaded as it is: the
	// policy in it, not the one in config.json, decides.
	if err := WriteBundleSeccomp(bundle, config, mkdirPolicy()); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != "rc=1" {
		t.Fatalf("with the bundle's program denying mkdir: %q, want rc=1", got)
	}
	// No policy in config.json: the file goes.
	if err := WriteBundleSeccomp(bundle, config, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bundle, SeccompProgramFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("program file left after a write without policy: %v", err)
	}
}

func TestBundleSeccompProgramRefused(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	cases := map[string]func(t *testing.T, bundle string, config []byte){
		// Written for another config.json (one with one more byte).
		"stale": func(t *testing.T, bundle string, config []byte) {
			if err := WriteBundleSeccomp(bundle, append(config, ' '), seccomp.DefaultProfile()); err != nil {
				t.Fatal(err)
			}
		},
		// Its header damaged.
		"malformed": func(t *testing.T, bundle string, config []byte) {
			if err := WriteBundleSeccomp(bundle, config, seccomp.DefaultProfile()); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(bundle, SeccompProgramFile)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[32] ^= 0xff // the first byte after the config's digest
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, bundle string, config []byte) {
			if err := WriteBundleSeccomp(bundle, config, seccomp.DefaultProfile()); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(filepath.Join(bundle, SeccompProgramFile), 40); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			bundle := newBundle(t, nil, "true")
			config, err := os.ReadFile(filepath.Join(bundle, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			spoil(t, bundle, config)
			err = r.Create(ctx(t), name, bundle, CreateOptions{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), SeccompProgramFile) {
				t.Fatalf("create: %v, want ErrInvalid naming %s", err, SeccompProgramFile)
			}
			cg, err := cgroups.New(cgroups.DetectAt(r.CgroupRoot), r.CgroupRoot, filepath.Join(r.CgroupParent, name))
			if err != nil {
				t.Fatal(err)
			}
			assertGone(t, r, name, bundle, cg)
		})
	}
}
