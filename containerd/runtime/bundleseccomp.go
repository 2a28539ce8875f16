package runtime

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// SeccompProgramFile is shoal's addition to an OCI bundle: the seccomp
// policy of config.json already compiled, so that a container start does
// not compile it again (the daemon compiles each distinct policy once,
// seccomp.Compile memoizes). It holds the SHA-256 of the config.json it was
// compiled for, then the program (seccomp.Program.MarshalBinary). A bundle
// without it (any plain OCI bundle) has its policy compiled by the runtime.
// It lives beside config.json, outside the rootfs: no container sees it,
// and the runtime reads it before the container's init exists.
const SeccompProgramFile = "seccomp.bpf"

// WriteBundleSeccomp records in bundle the compiled form of policy, the
// seccomp policy of the config.json whose content is config; with no
// policy it removes a program left by an earlier start.
func WriteBundleSeccomp(bundle string, config []byte, policy *specs.LinuxSeccomp) error {
	path := filepath.Join(bundle, SeccompProgramFile)
	if policy == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("seccomp program: %w", err)
		}
		return nil
	}
	p, err := seccomp.Compile(policy)
	if err != nil {
		return err
	}
	prog, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(config)
	if err := atomicfile.Replace(path, append(sum[:], prog...), 0o600); err != nil {
		return fmt.Errorf("seccomp program: %w", err)
	}
	return nil
}

// bundleSeccomp returns the program that enforces policy, the seccomp
// policy of config (the bytes of bundle/config.json): the bundle's compiled
// program if it has one, else the policy compiled here. A program file that
// is malformed or was compiled for another config.json is refused, not
// replaced: something wrote it, and the container must not start with a
// policy nobody asked for.
func bundleSeccomp(bundle string, config []byte, policy *specs.LinuxSeccomp) (*seccomp.Program, error) {
	b, err := os.ReadFile(filepath.Join(bundle, SeccompProgramFile))
	if errors.Is(err, os.ErrNotExist) {
		return seccomp.Compile(policy)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, SeccompProgramFile, err)
	}
	sum := sha256.Sum256(config)
	if len(b) < len(sum) || !bytes.Equal(b[:len(sum)], sum[:]) {
		return nil, fmt.Errorf("%w: %s was not compiled for this config.json", ErrInvalid, SeccompProgramFile)
	}
	var p seccomp.Program
	if err := p.UnmarshalBinary(b[len(sum):]); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, SeccompProgramFile, err)
	}
	return &p, nil
}
