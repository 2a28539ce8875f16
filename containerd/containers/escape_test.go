package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// swapMain runs inside a container as its attacker: it exchanges two paths
// (a directory and a symlink to /) atomically, as fast as it can, forever.
func swapMain(args []string) {
	if len(args) != 2 {
		os.Exit(2)
	}
	for {
		if err := unix.Renameat2(unix.AT_FDCWD, args[0], unix.AT_FDCWD, args[1], unix.RENAME_EXCHANGE); err != nil {
			fmt.Fprintln(os.Stderr, "swap:", err)
			os.Exit(1)
		}
	}
}

// newRaceEnv is an engine with the swapper image, and a host marker.
func newRaceEnv(t *testing.T) (env *testEnv, host, secret string) {
	t.Helper()
	env = newEnv(t)
	swapImage(t, env)
	host, secret = hostMarker(t)
	return env, host, secret
}

// hostMarker makes a host directory holding a secret file and an empty
// "drop" directory; an escape reads the one or writes into the other.
func hostMarker(t *testing.T) (dir, secret string) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "shoal-escape")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	secret = fmt.Sprintf("HOST-SECRET-%d", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

// assertUntouched fails if anything was written into the marker's drop dir.
func assertUntouched(t *testing.T, dir, secret string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "drop"))
	if err != nil || len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("written outside the container root: %s/drop holds %v (%v)", dir, names, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "secret")); err != nil || string(b) != secret {
		t.Errorf("host secret changed: %q %v", b, err)
	}
}

// busyboxWriter starts a tar on w with busyboxTar's entries but skip, for
// the caller to add its own and close.
func busyboxWriter(t *testing.T, w io.Writer, skip string) *tar.Writer {
	t.Helper()
	tw := tar.NewWriter(w)
	tr := tar.NewReader(bytes.NewReader(busyboxTar(t)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tw
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == skip {
			continue
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
}

// swapImage imports busybox plus this test binary (and the libraries it
// needs) as /swapper, so that a container can run swapMain.
func swapImage(t *testing.T, env *testEnv) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{self}
	out, err := exec.Command("ldd", self).Output()
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	var buf bytes.Buffer
	tw := busyboxWriter(t, &buf, "")
	dirs := map[string]bool{}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(f, "/")
		if i == 0 {
			name = "swapper"
		}
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			}
		}
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(b))})
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := env.opts.Images.Import(context.Background(), &buf, "swapper:latest", images.ImportOptions{
		Config: ocispec.ImageConfig{Cmd: []string{"sh"}},
	}); err != nil {
		t.Fatal(err)
	}
}

// treeTar is a tar of directories (names ending in "/"), files and
// symlinks ("name -> target").
func treeTar(t *testing.T, entries map[string]string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range sortedKeys(entries) {
		body := entries[name]
		switch {
		case strings.Contains(name, " -> "):
			n, target, _ := strings.Cut(name, " -> ")
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777})
		case strings.HasSuffix(name, "/"):
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
		default:
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
			tw.Write([]byte(body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	// Parents before children: shorter first, then by name.
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	return keys
}

// TestCpCommitRaceSymlinkSwap is the attack of issue 9 item 3: a running
// container exchanges a directory for a symlink to / in a tight loop while
// `cp` out of it, `cp` into it and `commit` (paused and not) run 1,000
// times in all. Nothing outside its root may be read (the host secret never
// appears in an archive or a committed layer) or written (the host drop
// directory stays empty).
func TestCpCommitRaceSymlinkSwap(t *testing.T) {
	env, host, secret := newRaceEnv(t)
	rel := strings.TrimPrefix(host, "/")
	c := env.run(Config{Image: "swapper", Cmd: []string{"sleep", "1000"}})
	// /w/d/<host>/ mirrors the host marker inside the container; /w/x -> /.
	if err := env.e.ExtractToDir(context.Background(), c.ID, "/", treeTar(t, map[string]string{
		"w/": "", "w/d/": "", "w/d/" + rel + "/": "", "w/d/" + rel + "/drop/": "",
		"w/d/" + rel + "/secret": "inside", "w/x -> /": "",
	})); err != nil {
		t.Fatal(err)
	}
	xid, err := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"/swapper", "swap", "/w/d", "/w/x"}})
	if err != nil {
		t.Fatal(err)
	}
	swapErr := make(chan error, 1)
	var swapOut bytes.Buffer
	go func() { swapErr <- env.e.ExecStart(context.Background(), xid, nil, &swapOut) }()
	t.Cleanup(func() {
		env.e.Kill(c.ID, unix.SIGKILL)
		select { // already received if the loop saw the swapper stop
		case <-swapErr:
		case <-time.After(10 * time.Second):
		}
		env.wait(c.ID, 10*time.Second)
	})

	inside := "/w/d/" + rel
	loopStart := time.Now()
	var fails [4]int
	var firstErr [4]error
	var spent [4]time.Duration
	deadline := time.Now().Add(60 * time.Second)
	const total = 1000
	ops, leaks := 0, 0
	for ; ops < total && time.Now().Before(deadline); ops++ {
		select {
		case err := <-swapErr:
			t.Fatalf("the swapping process stopped: %v %q", err, swapOut.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		began := time.Now()
		var out bytes.Buffer
		var err error
		var kind int
		switch n := ops % 10; {
		case n < 3: // cp out of a file
			err = env.e.ArchivePath(ctx, c.ID, inside+"/secret", &out)
		case n < 5: // cp out of a directory
			kind = 1
			err = env.e.ArchivePath(ctx, c.ID, inside, &out)
		case n < 9: // cp into a directory
			kind = 2
			err = env.e.ExtractToDir(ctx, c.ID, inside+"/drop", treeTar(t, map[string]string{
				"f": "x", "sub/": "", "sub/g": "y",
			}))
		default: // commit, every other one without pausing
			kind = 3
			_, err = env.e.Commit(ctx, c.ID, CommitOptions{NoPause: ops%20 == 9})
		}
		cancel()
		spent[kind] += time.Since(began)
		if err != nil {
			if fails[kind]++; firstErr[kind] == nil {
				firstErr[kind] = err
			}
		}
		if bytes.Contains(out.Bytes(), []byte(secret)) {
			leaks++
		}
	}
	if ops < total {
		t.Errorf("only %d of %d operations in the time allowed", ops, total)
	}
	t.Logf("loop took %v", time.Since(loopStart))
	t.Logf("%d operations; failed (cp out file, cp out dir, cp in, commit): %v in %v, first errors %v", ops, fails, spent, firstErr)
	if leaks > 0 {
		t.Errorf("cp returned the host's secret %d times", leaks)
	}
	assertUntouched(t, host, secret)
	// No committed layer holds the host's secret.
	snaps := filepath.Join(env.opts.Root, "snapshots")
	if _, err := os.Stat(snaps); err != nil {
		snaps = env.opts.Root
	}
	filepath.WalkDir(snaps, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("the host's secret was committed into %s", p)
		}
		return nil
	})
}

// TestBindTargetRaceSymlinkSwap races the creation of bind-mount targets: a
// running container swaps /v/d (a shared host directory) between a
// directory and a symlink to / while containers that mount
// /v/d/<host marker>/drop/mntN start. Targets are created inside their root
// or not at all, never in the host's marker directory.
func TestBindTargetRaceSymlinkSwap(t *testing.T) {
	env, host, secret := newRaceEnv(t)
	rel := strings.TrimPrefix(host, "/")
	vol := t.TempDir()
	if err := os.MkdirAll(filepath.Join(vol, "d", rel, "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(vol, "x")); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	a := env.run(Config{Image: "swapper", Cmd: []string{"/swapper", "swap", "/v/d", "/v/x"}, Binds: []string{vol + ":/v"}})
	t.Cleanup(func() {
		env.e.Kill(a.ID, unix.SIGKILL)
		env.wait(a.ID, 10*time.Second)
	})
	started, failed := 0, 0
	var firstErr error
	deadline := time.Now().Add(40 * time.Second)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		if st, err := env.e.Get(a.ID); err != nil || !st.State.Running {
			t.Fatalf("the swapping container stopped: %+v %v %q", st.State, err, env.logs(a.ID))
		}
		b, err := env.e.Create(context.Background(), "", Config{Image: "swapper", Cmd: []string{"true"}, NetworkMode: "none",
			Binds: []string{vol + ":/v", fmt.Sprintf("%s:/v/d/%s/drop/mnt%d", src, rel, i)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.e.Start(context.Background(), b.ID); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			started++
			env.wait(b.ID, 10*time.Second)
		}
		if err := env.e.Remove(context.Background(), b.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("started %d, refused %d (first: %v)", started, failed, firstErr)
	assertUntouched(t, host, secret)
}

// TestProcSysfsTargetSymlink is CVE-2019-19921: an image whose /proc (or
// /sys) is a symlink must not get proc (sysfs) mounted wherever the link
// points; the start is refused, as runc refuses it.
func TestProcSysfsTargetSymlink(t *testing.T) {
	env := newEnv(t)
	for _, fs := range []string{"proc", "sys"} {
		var buf bytes.Buffer
		tw := busyboxWriter(t, &buf, fs+"/")
		tw.WriteHeader(&tar.Header{Name: "tmp/fake/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: fs, Typeflag: tar.TypeSymlink, Linkname: "/tmp/fake", Mode: 0o777})
		tw.Close()
		ref := "link" + fs + ":latest"
		if _, err := env.opts.Images.Import(context.Background(), &buf, ref, images.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		c := env.create(Config{Image: ref, Cmd: []string{"ls", "/tmp/fake"}})
		err := env.e.Start(context.Background(), c.ID)
		if err == nil {
			env.wait(c.ID, 10*time.Second)
			t.Errorf("%s: a container whose /%s is a symlink started; /tmp/fake holds %q", fs, fs, env.logs(c.ID))
			continue
		}
		if !strings.Contains(err.Error(), "symlink") {
			t.Errorf("%s: refused, but the error does not say why: %v", fs, err)
		}
	}
}

// TestCommitPausesByDefault watches the container's freezer while commits
// of a 32 MiB change run: frozen during a default commit, never with
// NoPause, thawed after both.
func TestCommitPausesByDefault(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=32 2>/dev/null; touch /ready; sleep 1000"}})
	cg, err := env.e.rt.Cgroup(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join("/sys/fs/cgroup/freezer", cg.Path(), "freezer.state")
	frozen := func() bool {
		b, _ := os.ReadFile(state)
		return strings.TrimSpace(string(b)) == "FROZEN"
	}
	if _, err := os.Stat(state); err != nil {
		state = filepath.Join("/sys/fs/cgroup", cg.Path(), "cgroup.events")
		frozen = func() bool {
			b, _ := os.ReadFile(state)
			return strings.Contains(string(b), "frozen 1")
		}
	}
	if _, err := os.Stat(state); err != nil {
		t.Skipf("no freezer file for the container: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := env.e.StatPath(c.ID, "/ready"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container did not write its change")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, noPause := range []bool{false, true} {
		done := make(chan error, 1)
		go func() {
			_, err := env.e.Commit(context.Background(), c.ID, CommitOptions{NoPause: noPause})
			done <- err
		}()
		seen := false
	poll:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				break poll
			default:
				seen = seen || frozen()
				time.Sleep(200 * time.Microsecond)
			}
		}
		if seen == noPause {
			t.Errorf("NoPause=%v: the container was frozen during the commit: %v", noPause, seen)
		}
		if frozen() {
			t.Errorf("NoPause=%v: the container is still frozen after the commit", noPause)
		}
	}
}

// TestExitedUnder: the errors of a pause whose container exited under it
// (its runtime record or cgroup gone, a v1 cgroup removed between the
// freeze's write and read) let a commit go on unpaused; others do not.
func TestExitedUnder(t *testing.T) {
	const state = "/sys/fs/cgroup/freezer/x/c/freezer.state"
	for err, want := range map[error]bool{
		fmt.Errorf("cgroups: freeze: %w", fmt.Errorf("cgroups: read %s: %w", state, unix.ENODEV)): true,
		fmt.Errorf("cgroups: freeze: %w", fmt.Errorf("cgroups: open %s: %w", state, unix.ENOENT)): true,
		fmt.Errorf("pause: %w", runtime.ErrNotFound):                                              true,
		fmt.Errorf("cgroups: freeze: %w", fmt.Errorf("cgroups: write %s: %w", state, unix.EBUSY)): false,
		context.DeadlineExceeded: false,
	} {
		if got := exitedUnder(err); got != want {
			t.Errorf("exitedUnder(%v) = %v, want %v", err, got, want)
		}
	}
}
