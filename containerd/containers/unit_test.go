package containers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/images"
)

func TestProcessArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	for _, tc := range []struct {
		name string
		cfg  Config
		img  ocispec.ImageConfig
		want []string
	}{
		{"image's entrypoint and cmd", Config{}, img, []string{"/entry", "default"}},
		{"cmd replaces the image's cmd", Config{Cmd: []string{"x", "y"}}, img, []string{"/entry", "x", "y"}},
		{"entrypoint drops the image's cmd", Config{Entrypoint: []string{"/e2"}}, img, []string{"/e2"}},
		{"entrypoint and cmd", Config{Entrypoint: []string{"/e2"}, Cmd: []string{"a"}}, img, []string{"/e2", "a"}},
		{"empty entrypoint resets it", Config{Entrypoint: []string{}, Cmd: []string{"sh"}}, img, []string{"sh"}},
		{"nothing at all", Config{}, ocispec.ImageConfig{}, []string{}},
	} {
		if got := processArgs(tc.cfg, tc.img); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// fakeRootfs is a directory with the /etc files that user resolution reads.
func fakeRootfs(t *testing.T) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\nbroken\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nstaff:x:50:app\nother:x:51:bob\ndev:x:60:bob, app\n"), 0o644)
	return dir
}

func TestBuildSpec(t *testing.T) {
	rootfs := fakeRootfs(t)
	hostDir := t.TempDir()
	id := strings.Repeat("ab", 32)
	img := ocispec.ImageConfig{Env: []string{"PATH=/img/bin", "IMG=1"}, WorkingDir: "/srv", User: "app"}
	for _, tc := range []struct {
		name    string
		cfg     Config
		check   func(t *testing.T, s *specs.Spec)
		wantErr error
	}{
		{"defaults from the image", Config{}, func(t *testing.T, s *specs.Spec) {
			// HOME last, from the user's passwd entry, as runc sets it.
			if !slices.Equal(s.Process.Env, []string{"PATH=/img/bin", "IMG=1", "HOSTNAME=" + id[:12], "HOME=/home/app"}) {
				t.Errorf("env %q", s.Process.Env)
			}
			if s.Process.Cwd != "/srv" || s.Process.User.UID != 1000 || s.Process.User.GID != 1001 {
				t.Errorf("cwd %q user %+v", s.Process.Cwd, s.Process.User)
			}
			// The primary gid heads the supplementary groups (Docker since
			// 20.10.18, CVE-2022-36109).
			if !slices.Equal(s.Process.User.AdditionalGids, []uint32{1001, 50, 60}) {
				t.Errorf("supplementary groups %v", s.Process.User.AdditionalGids)
			}
			if s.Hostname != id[:12] || s.Root.Path != "rootfs" || s.Root.Readonly {
				t.Errorf("hostname %q root %+v", s.Hostname, s.Root)
			}
			if !slices.Equal(s.Process.Args, []string{"/bin/prog", "arg"}) {
				t.Errorf("args %q", s.Process.Args)
			}
			if s.Linux.Resources != nil && s.Linux.Resources.Memory != nil {
				t.Errorf("memory limit without --memory")
			}
		}, nil},
		{"options override the image", Config{Env: []string{"IMG=2", "NEW=x"}, WorkingDir: "/w", User: "0:50", Hostname: "h", ReadonlyRootfs: true}, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Env, []string{"PATH=/img/bin", "IMG=2", "HOSTNAME=h", "NEW=x", "HOME=/root"}) {
				t.Errorf("env %q", s.Process.Env)
			}
			if s.Process.Cwd != "/w" || s.Process.User.UID != 0 || s.Process.User.GID != 50 || s.Hostname != "h" || !s.Root.Readonly {
				t.Errorf("cwd %q user %+v hostname %q", s.Process.Cwd, s.Process.User, s.Hostname)
			}
		}, nil},
		{"user name with group name", Config{User: "app:staff"}, func(t *testing.T, s *specs.Spec) {
			if s.Process.User.UID != 1000 || s.Process.User.GID != 50 || !slices.Equal(s.Process.User.AdditionalGids, []uint32{50}) {
				t.Errorf("user %+v", s.Process.User)
			}
		}, nil},
		{"supplementary groups of a named user", Config{User: "app"}, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; u.UID != 1000 || u.GID != 1001 || !slices.Equal(u.AdditionalGids, []uint32{1001, 50, 60}) {
				t.Errorf("user %+v", u)
			}
		}, nil},
		{"supplementary groups of a numeric uid", Config{User: "1000"}, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; !slices.Equal(u.AdditionalGids, []uint32{1001, 50, 60}) {
				t.Errorf("user %+v", u)
			}
		}, nil},
		{"numeric uid takes its passwd gid", Config{User: "1000"}, func(t *testing.T, s *specs.Spec) {
			if s.Process.User.UID != 1000 || s.Process.User.GID != 1001 {
				t.Errorf("user %+v", s.Process.User)
			}
		}, nil},
		{"unknown numeric uid runs as gid 0", Config{User: "4242"}, func(t *testing.T, s *specs.Spec) {
			if s.Process.User.UID != 4242 || s.Process.User.GID != 0 {
				t.Errorf("user %+v", s.Process.User)
			}
		}, nil},
		{"unknown user", Config{User: "nobody"}, nil, ErrInvalidArgument},
		{"unknown group", Config{User: "app:nogroup"}, nil, ErrInvalidArgument},
		{"relative workdir", Config{WorkingDir: "rel"}, nil, ErrInvalidArgument},
		{"bad env", Config{Env: []string{"=x"}}, nil, ErrInvalidArgument},
		{"resources", Config{Memory: 64 << 20, NanoCPUs: 1_500_000_000, CPUShares: 512, PidsLimit: 100}, func(t *testing.T, s *specs.Spec) {
			r := s.Linux.Resources
			if *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || *r.Pids.Limit != 100 {
				t.Errorf("resources %+v %+v %+v", r.Memory, r.CPU, r.Pids)
			}
		}, nil},
		{"host network", Config{NetworkMode: "host"}, func(t *testing.T, s *specs.Spec) {
			for _, n := range s.Linux.Namespaces {
				if n.Type == specs.NetworkNamespace {
					t.Errorf("host network keeps a network namespace")
				}
			}
		}, nil},
		{"joined network namespace", Config{NetworkMode: "bridge", NetNSPath: "/run/shoal/netns/x"}, func(t *testing.T, s *specs.Spec) {
			found := false
			for _, n := range s.Linux.Namespaces {
				found = found || (n.Type == specs.NetworkNamespace && n.Path == "/run/shoal/netns/x")
			}
			if !found {
				t.Errorf("namespaces %+v", s.Linux.Namespaces)
			}
		}, nil},
		{"binds and no-new-privileges", Config{Binds: []string{hostDir + ":/data:ro", hostDir + ":/rw"}, NoNewPrivileges: true}, func(t *testing.T, s *specs.Spec) {
			var got []string
			for _, m := range s.Mounts {
				if m.Source == hostDir {
					got = append(got, m.Destination+" "+strings.Join(m.Options, ","))
				}
			}
			if len(got) != 2 || !strings.HasSuffix(got[0], ",ro") || strings.HasSuffix(got[1], ",ro") || !s.Process.NoNewPrivileges {
				t.Errorf("binds %q nnp %v", got, s.Process.NoNewPrivileges)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Container{ID: id, Path: "/bin/prog", Args: []string{"arg"}, Config: tc.cfg}
			s, err := buildSpec(c, img, mustUserDB(t, rootfs), cgroups.DefaultRoot)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("want %v, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestResolveUserStaysInRootfs(t *testing.T) {
	// /etc/passwd as a symlink to the host's must resolve inside the rootfs.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := resolveUser(mustUserDB(t, dir), "root"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a symlinked passwd was followed to the host: %v", err)
	}
}

func TestParseBind(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		in       string
		src, dst string
		ro, ok   bool
	}{
		{dir + ":/data", dir, "/data", false, true},
		{dir + ":/data:ro", dir, "/data", true, true},
		{dir + ":/data:rw", dir, "/data", false, true},
		{dir + ":/data:zz", "", "", false, false},
		{"vol:/data", "", "", false, false},
		{dir + ":rel", "", "", false, false},
		{dir, "", "", false, false},
		{"/no/such/dir:/data", "", "", false, false},
		{":/data", "", "", false, false},
	} {
		src, dst, ro, err := ParseBind(tc.in)
		if tc.ok != (err == nil) || (tc.ok && (src != tc.src || dst != tc.dst || ro != tc.ro)) {
			t.Errorf("ParseBind(%q) = %q %q %v %v", tc.in, src, dst, ro, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseBind(%q): %v is not ErrInvalidArgument", tc.in, err)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{"KILL": unix.SIGKILL, "sigterm": unix.SIGTERM, "9": unix.SIGKILL, " HUP ": unix.SIGHUP, "SIGRTMIN": 34, "RTMIN+2": 36, "SIGRTMAX-1": 63} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "NOPE", "9x", "RTMIN+40", "RTMAX+1"} {
		if _, err := ParseSignal(in); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseSignal(%q): %v", in, err)
		}
	}
}

func TestNamesAndIDs(t *testing.T) {
	re := regexp.MustCompile(`^[a-z]+_[a-z]+$`)
	for i := 0; i < 50; i++ {
		if n := randomName(false); !re.MatchString(n) || !namePattern().MatchString(n) {
			t.Fatalf("generated name %q", n)
		}
	}
	if n := randomName(true); !regexp.MustCompile(`^[a-z]+_[a-z]+[0-9]$`).MatchString(n) {
		t.Fatalf("name with suffix %q", n)
	}
	id := newID()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) || id == newID() {
		t.Fatalf("id %q", id)
	}
	for name, ok := range map[string]bool{"web": true, "/web": true, "a.b-c_d": true, "w": false, "-x": false, "a b": false, "a/b": false} {
		if namePattern().MatchString(name) != ok {
			t.Errorf("name %q valid=%v", name, !ok)
		}
	}
}

// openBare opens an engine over a data root holding hand-written records
// (no containers run: this needs neither root nor busybox).
func openBare(t *testing.T, recs ...Container) (*Engine, string) {
	t.Helper()
	root := t.TempDir()
	for _, c := range recs {
		dir := filepath.Join(root, "containers", c.ID)
		if err := os.MkdirAll(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(c)
		if err := os.WriteFile(filepath.Join(dir, "config.v2.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := Open(ctx, Options{Root: root, ExecRoot: filepath.Join(root, "exec"), Images: imgs, Binary: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	return e, root
}

func TestRecordsPersistAndLookup(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Container{ID: "aaaa" + strings.Repeat("1", 60), Name: "/alpha", Created: t0,
		Config: Config{Image: "busybox", Labels: map[string]string{"k": "v"}},
		State:  State{Status: "exited", ExitCode: 3, FinishedAt: t0.Add(time.Minute)}}
	b := Container{ID: "aaab" + strings.Repeat("2", 60), Name: "/beta", Created: t0.Add(time.Hour), State: State{Status: "created"}}
	e, root := openBare(t, a, b)
	// A directory without a record (a create that died half-way) is cleaned up.
	orphan := filepath.Join(root, "containers", strings.Repeat("f", 64))
	os.MkdirAll(orphan, 0o711)
	if _, err := Open(context.Background(), e.opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan container dir kept: %v", err)
	}

	for _, q := range []string{a.ID, "alpha", "/alpha", "aaaa", a.ID[:12]} {
		c, err := e.Get(q)
		if err != nil || c.ID != a.ID || c.State.ExitCode != 3 || c.Config.Labels["k"] != "v" {
			t.Fatalf("Get(%q) = %+v, %v", q, c, err)
		}
	}
	if _, err := e.Get("aaa"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := e.Get("nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if l := e.List(false); len(l) != 0 {
		t.Fatalf("running list: %v", l)
	}
	if l := e.List(true); len(l) != 2 || l[0].ID != b.ID {
		t.Fatalf("list all, newest first: %v", l)
	}

	// An update is on disk when it returns, and replaces the file atomically.
	if _, err := e.update(a.ID, func(c *Container) { c.State.Error = "boom" }); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "containers", a.ID, "config.v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk Container
	if err := json.Unmarshal(raw, &onDisk); err != nil || onDisk.State.Error != "boom" || onDisk.Name != "/alpha" {
		t.Fatalf("on disk: %+v %v", onDisk.State, err)
	}
	if _, err := os.Stat(filepath.Join(root, "containers", a.ID, "config.v2.json.tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary record left: %v", err)
	}
	// Wait on a stopped container returns at once with its state.
	st, err := e.Wait(context.Background(), "alpha", WaitNotRunning, nil)
	if err != nil || st.ExitCode != 3 {
		t.Fatalf("wait: %+v %v", st, err)
	}
	// A generated name never repeats one in use.
	for i := 0; i < 20; i++ {
		if n := e.generateName(); n == "alpha" || n == "beta" || strings.HasPrefix(n, "/") {
			t.Fatalf("generated %q", n)
		}
	}
}

// TestProcessUser: the supplementary groups Docker gives a process, primary
// gid first (CVE-2022-36109), for root by default too.
func TestProcessUser(t *testing.T) {
	rootfs := fakeRootfs(t)
	if err := os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user     string
		uid, gid uint32
		groups   []uint32
	}{
		{"", 0, 0, []uint32{0, 10}},
		{"root", 0, 0, []uint32{0, 10}},
		{"app", 1000, 1001, []uint32{1001, 10, 50}},
		{"1000", 1000, 1001, []uint32{1001, 10, 50}},
		{"7:8", 7, 8, []uint32{8}},
		{"app:staff", 1000, 50, []uint32{50}},
		{"4242", 4242, 0, []uint32{0}},
	} {
		u, err := processUser(mustUserDB(t, rootfs), tc.user)
		if err != nil || u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.groups) {
			t.Errorf("%q: %+v %v, want %d:%d groups %v", tc.user, u, err, tc.uid, tc.gid, tc.groups)
		}
	}
	if _, err := processUser(mustUserDB(t, rootfs), "nobody"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown user: %v", err)
	}
}

// TestHome: a process without HOME gets its user's, from the container's
// /etc/passwd, "/" for a user it does not list; a HOME given stays.
func TestHome(t *testing.T) {
	rootfs := fakeRootfs(t)
	for _, tc := range []struct {
		env  []string
		uid  uint32
		want []string
	}{
		{nil, 0, []string{"HOME=/root"}},
		{[]string{"A=1"}, 1000, []string{"A=1", "HOME=/home/app"}},
		{nil, 4242, []string{"HOME=/"}},
		{[]string{"HOME=/x"}, 1000, []string{"HOME=/x"}},
	} {
		if got := withHome(tc.env, mustUserDB(t, rootfs), tc.uid); !slices.Equal(got, tc.want) {
			t.Errorf("%v as %d: %q, want %q", tc.env, tc.uid, got, tc.want)
		}
	}
}
