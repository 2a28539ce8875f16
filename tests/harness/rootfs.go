package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	rootfsOnce sync.Once
	rootfsTar  string
	rootfsErr  error
)

// BusyboxTar returns a rootfs tarball made from Debian's static busybox: the
// binary, a symlink per applet, /etc/passwd and /etc/group. It is built once
// per test process.
func BusyboxTar(t testing.TB) string {
	t.Helper()
	rootfsOnce.Do(func() { rootfsTar, rootfsErr = buildBusyboxTar() })
	if rootfsErr != nil {
		t.Fatalf("busybox rootfs: %v", rootfsErr)
	}
	return rootfsTar
}

func buildBusyboxTar() (string, error) {
	// Under BaseDir, so that Sweep removes it with everything else.
	if err := os.MkdirAll(BaseDir, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(BaseDir, "rootfs-")
	if err != nil {
		return "", err
	}
	root := filepath.Join(dir, "rootfs")
	if err := MakeBusyboxRootfs(root); err != nil {
		return "", err
	}
	tarPath := filepath.Join(dir, "busybox.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "-C", root, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar: %v: %s", err, out)
	}
	return tarPath, nil
}

// MakeBusyboxRootfs writes a busybox root filesystem into dir.
func MakeBusyboxRootfs(root string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/www"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is needed (apt-get install busybox-static): %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.ContainsAny(applet, "[/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":         "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":          "root:x:0:\nnogroup:x:65534:\n",
		"var/www/index.html": "hello from shoal\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
