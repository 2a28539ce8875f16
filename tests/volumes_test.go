package tests

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/tests/harness"
)

// volumeNames lists the daemon's volumes, one name a line.
func volumeNames(d *harness.Daemon) []string {
	return strings.Fields(d.Must("volume", "ls", "-q"))
}

func mustFail(t *testing.T, d *harness.Daemon, want string, args ...string) {
	t.Helper()
	r := d.Run(args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Fatalf("shoal %s: want one-line error with %q, got %s", strings.Join(args, " "), want, r)
	}
}

func TestVolumes(t *testing.T) {
	d := engine(t)
	run := func(args ...string) string {
		return strings.TrimSpace(d.Must(append([]string{"run", "--rm", "--network", "none"}, args...)...))
	}

	// A named volume outlives its container; its data is there for the next.
	d.Must("volume", "create", "--label", "team=a", "data")
	run("-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
	if got := run("-v", "data:/data", "busybox", "cat", "/data/f"); got != "kept" {
		t.Fatalf("named volume lost its data: %q", got)
	}
	// run --rm removes its container (and releases the volume) just after it ends.
	var events []string
	if !pollUntil(10*time.Second, func() bool {
		events = strings.Fields(d.Must("events", "--since", "1m", "--until", fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9),
			"--filter", "type=volume", "--filter", "volume=data", "--format", "{{.Action}}"))
		return strings.Join(events, " ") == "create mount unmount mount unmount"
	}) {
		t.Fatalf("volume events: %v", events)
	}
	if got := strings.TrimSpace(d.Must("volume", "inspect", "--format", "{{.Driver}} {{.Labels.team}} {{.Mountpoint}}", "data")); got != "local a "+filepath.Join(d.Root, "volumes", "data", "_data") {
		t.Fatalf("volume inspect: %q", got)
	}
	if got := strings.TrimSpace(d.Must("volume", "ls", "--filter", "label=team=a", "--format", "{{.Name}}")); got != "data" {
		t.Fatalf("volume ls --filter label: %q", got)
	}

	if out := d.Must("system", "df", "--format", "{{.Type}}={{.TotalCount}}"); !strings.Contains(out, "Local Volumes=1") {
		t.Fatalf("system df: %q", out)
	}

	// readonly is enforced: a write fails with EROFS.
	if r := d.Run("run", "--rm", "--network", "none", "-v", "data:/data:ro", "busybox", "touch", "/data/x"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "Read-only file system") {
		t.Fatalf("write to a :ro volume: %s", r)
	}
	if r := d.Run("run", "--rm", "--network", "none", "--mount", "type=volume,src=data,dst=/data,readonly", "busybox", "touch", "/data/x"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "Read-only file system") {
		t.Fatalf("write to a readonly --mount: %s", r)
	}

	// Copy-up: a new volume gets the image's content at the target, with
	// its owners and modes; nocopy leaves it empty.
	d.Must("import", "--change", "VOLUME /app", appImageTar(t, ""), "appimg")
	// The image has no shell: the create does the copy-up, busybox looks.
	id := strings.TrimSpace(d.Must("create", "--network", "none", "-v", "cu:/app", "appimg", "/none"))
	d.Must("rm", id)
	got := run("-v", "cu:/app", "busybox", "sh", "-c", "stat -c '%u:%g %a' /app /app/sub/f; cat /app/sub/f")
	if got != "1000:2000 1750\n1000:2000 640\nhi" {
		t.Fatalf("copy-up into a new volume: %q", got)
	}
	id = strings.TrimSpace(d.Must("create", "--network", "none", "--mount", "type=volume,src=nc,dst=/app,volume-nocopy", "appimg", "/none"))
	d.Must("rm", id)
	if got := run("-v", "nc:/app", "busybox", "ls", "-A", "/app"); got != "" {
		t.Fatalf("volume-nocopy copied: %q", got)
	}
	// (after run --rm has removed its container, which it does just after the exit)
	if !pollUntil(10*time.Second, func() bool { return d.Run("volume", "rm", "cu", "nc").Code == 0 }) {
		t.Fatalf("volume rm cu nc: %s", d.Run("volume", "ls"))
	}
	// The image's VOLUME gets an anonymous volume; rm -v removes it, and
	// only it (not the named one).
	before := len(volumeNames(d))
	id = strings.TrimSpace(d.Must("create", "--network", "none", "-v", "data:/data", "appimg", "/none"))
	anon := strings.TrimSpace(d.Must("inspect", "--format", `{{range .Mounts}}{{if eq .Destination "/app"}}{{.Type}} {{.Name}}{{end}}{{end}}`, id))
	if !strings.HasPrefix(anon, "volume ") || len(anon) != len("volume ")+64 {
		t.Fatalf("image VOLUME mount in inspect: %q", anon)
	}
	anonName := strings.TrimPrefix(anon, "volume ")
	if got := strings.TrimSpace(d.Must("volume", "ls", "-q", "--filter", "dangling=false")); !strings.Contains(got, anonName) || !strings.Contains(got, "data") {
		t.Fatalf("volumes in use: %q", got)
	}
	// A volume in use cannot be removed, even with -f.
	mustFail(t, d, "volume is in use", "volume", "rm", "data")
	mustFail(t, d, "volume is in use", "volume", "rm", "-f", anonName)
	d.Must("rm", "-v", id)
	if names := volumeNames(d); len(names) != before || strings.Contains(strings.Join(names, " "), anonName) {
		t.Fatalf("rm -v: volumes %v (had %d)", names, before)
	}
	// run --rm removes the anonymous volumes it made.
	run("-v", "/scratch", "busybox", "true")
	if !pollUntil(10*time.Second, func() bool { return len(volumeNames(d)) == before }) {
		t.Fatalf("run --rm left volumes: %v", volumeNames(d))
	}

	// --volumes-from shares the volumes (read-only when asked).
	d.Must("create", "--name", "holder", "--network", "none", "-v", "data:/shared", "busybox", "true")
	if got := run("--volumes-from", "holder", "busybox", "cat", "/shared/f"); got != "kept" {
		t.Fatalf("--volumes-from: %q", got)
	}
	if r := d.Run("run", "--rm", "--network", "none", "--volumes-from", "holder:ro", "busybox", "touch", "/shared/y"); r.Code == 0 {
		t.Fatalf("--volumes-from :ro wrote: %s", r)
	}
	d.Must("rm", "holder")

	// tmpfs: a tmpfs of the size asked, by --tmpfs and --mount.
	if got := run("--tmpfs", "/t:size=2m", "busybox", "sh", "-c", "grep ' /t ' /proc/mounts; df -k /t | tail -1"); !strings.Contains(got, "tmpfs /t tmpfs") || !strings.Contains(got, " 2048 ") {
		t.Fatalf("--tmpfs: %q", got)
	}
	if got := run("--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770", "busybox", "sh", "-c", "stat -c %a /t; df -k /t | tail -1"); !strings.HasPrefix(got, "1770\n") || !strings.Contains(got, " 1024 ") {
		t.Fatalf("--mount type=tmpfs: %q", got)
	}

	// A volume with --opt: mounted while used, unmounted after.
	d.Must("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=3m", "tv")
	mp := filepath.Join(d.Root, "volumes", "tv", "_data")
	id = strings.TrimSpace(d.Must("create", "--network", "none", "-v", "tv:/tv", "busybox", "df", "-k", "/tv"))
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("volume tv not mounted while used: %v %x", err, st.Type)
	}
	// The count and the mount outlive a daemon restart.
	d.Restart()
	if err := unix.Statfs(mp, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("volume tv not mounted after a daemon restart: %v %x", err, st.Type)
	}
	mustFail(t, d, "volume is in use", "volume", "rm", "tv")
	d.Must("start", id)
	d.Must("wait", id)
	if out := d.Must("logs", id); !strings.Contains(out, " 3072 ") {
		t.Fatalf("tmpfs volume size: %q", out)
	}
	d.Must("rm", id)
	if err := unix.Statfs(mp, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Fatalf("volume tv still mounted without users: %v", err)
	}

	// prune: anonymous volumes only by default; all with --all.
	d.Must("volume", "create", "keepme")
	d.Must("create", "--name", "anonholder", "--network", "none", "-v", "/x", "busybox", "true")
	d.Must("rm", "anonholder") // without -v: its anonymous volume stays, dangling
	if out := d.Must("system", "prune", "-f", "--volumes"); strings.Contains(out, "keepme") || !strings.Contains(out, "Deleted Volumes:") {
		t.Fatalf("system prune --volumes: %q", out)
	}
	d.Must("create", "--name", "anonholder", "--network", "none", "-v", "/x", "busybox", "true")
	d.Must("rm", "anonholder")
	if out := d.Must("volume", "prune", "-f"); strings.Contains(out, "keepme") || !strings.Contains(out, "Deleted Volumes:") {
		t.Fatalf("volume prune: %q", out)
	}
	if out := d.Must("volume", "prune", "-f", "--all"); !strings.Contains(out, "keepme") || !strings.Contains(out, "data") {
		t.Fatalf("volume prune --all: %q", out)
	}
	if names := volumeNames(d); len(names) != 0 {
		t.Fatalf("after prune --all: %v", names)
	}
	if _, err := os.Stat(filepath.Join(d.Root, "volumes", "data")); !os.IsNotExist(err) {
		t.Fatalf("pruned volume's directory: %v", err)
	}
}

// TestVolumesBadInput: every new flag's bad values give a one-line error,
// a non-zero exit, and leave no container and no volume behind.
func TestVolumesBadInput(t *testing.T) {
	d := engine(t)
	for _, c := range []struct {
		want string
		args []string
	}{
		{"invalid characters for a local volume name", []string{"volume", "create", "../x"}},
		{"invalid characters for a local volume name", []string{"volume", "create", "a/b"}},
		{"not supported", []string{"volume", "create", "-d", "rexray", "vv"}},
		{"not supported on this node", []string{"volume", "create", "-o", "type=nfs", "-o", "o=addr=10.0.0.1", "-o", "device=:/x", "vv"}},
		{"invalid option key", []string{"volume", "create", "-o", "colour=red", "vv"}},
		{"KEY=VALUE", []string{"volume", "create", "-o", "type", "vv"}},
		{"mount", []string{"volume", "create", "-o", "type=ext4", "-o", "device=/dev/nonexistent", "vv"}},
		{"no such volume", []string{"volume", "inspect", "nosuch"}},
		{"no such volume", []string{"volume", "rm", "nosuch"}},
		{"invalid characters for a local volume name", []string{"run", "--mount", "type=volume,src=../x,dst=/d", "busybox", "true"}},
		{"unexpected key 'colour'", []string{"run", "--mount", "type=volume,dst=/d,colour=red", "busybox", "true"}},
		{"target is required", []string{"run", "--mount", "type=volume,src=v", "busybox", "true"}},
		{"mount type \"npipe\" is not supported", []string{"run", "--mount", "type=npipe,dst=/d", "busybox", "true"}},
		{"cannot mix 'tmpfs-*' options", []string{"run", "--mount", "type=volume,dst=/d,tmpfs-size=1m", "busybox", "true"}},
		{"invalid tmpfs-size", []string{"run", "--mount", "type=tmpfs,dst=/d,tmpfs-size=lots", "busybox", "true"}},
		{"bind-propagation=rshared is not supported", []string{"run", "--mount", "type=bind,src=/tmp,dst=/d,bind-propagation=rshared", "busybox", "true"}},
		{"the path must be absolute", []string{"run", "--tmpfs", "rel", "busybox", "true"}},
		{"invalid tmpfs option", []string{"run", "--tmpfs", "/t:colour=red", "busybox", "true"}},
		{"want CONTAINER[:ro|rw]", []string{"run", "--volumes-from", "x:rx", "busybox", "true"}},
		{"No such container", []string{"run", "--volumes-from", "nosuch", "busybox", "true"}},
		{"Duplicate mount point", []string{"run", "-v", "a1:/d", "--tmpfs", "/d", "busybox", "true"}},
		// The second volume's options cannot mount: the first, made
		// before, must go again, and no container stays.
		{"mount", []string{"run", "-v", "made1:/a", "--mount", "type=volume,src=made2,dst=/b,volume-opt=type=ext4,volume-opt=device=/dev/nonexistent", "busybox", "true"}},
	} {
		mustFail(t, d, c.want, c.args...)
	}
	// The daemon checks names itself: a client that sends "../x" as a
	// volume in Binds or --mount is refused.
	for _, body := range []string{
		`{"Image":"busybox","HostConfig":{"Binds":["../x:/d"]}}`,
		`{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"volume","Source":"../x","Target":"/d"}]}}`,
	} {
		if code, out := apiPost(t, d.Socket, "/containers/create", body); code != 400 || !strings.Contains(out, "invalid characters") {
			t.Fatalf("create with %s: %d %s", body, code, out)
		}
	}
	if names := volumeNames(d); len(names) != 0 {
		t.Fatalf("bad input left volumes: %v", names)
	}
	if out := strings.TrimSpace(d.Must("ps", "-aq")); out != "" {
		t.Fatalf("bad input left containers: %q", out)
	}
	ents, _ := os.ReadDir(filepath.Join(d.Root, "volumes"))
	if len(ents) != 0 {
		t.Fatalf("bad input left directories under volumes/: %v", ents)
	}
}

// appImageTar writes an image root with /app (owned 1000:2000, mode 1750)
// holding sub/f, and, when link is given, /evil as a symlink to it.
func appImageTar(t *testing.T, link string) string {
	p := filepath.Join(t.TempDir(), "app.tar")
	hdrs := []*tar.Header{
		{Name: "app/", Mode: 0o1750, Uid: 1000, Gid: 2000, Typeflag: tar.TypeDir},
		{Name: "app/sub/", Mode: 0o755, Uid: 1000, Gid: 2000, Typeflag: tar.TypeDir},
		{Name: "app/sub/f", Mode: 0o640, Uid: 1000, Gid: 2000, Typeflag: tar.TypeReg},
	}
	if link != "" {
		hdrs = append(hdrs, &tar.Header{Name: "evil", Linkname: link, Mode: 0o777, Typeflag: tar.TypeSymlink})
	}
	writeTarEntries(t, p, "hi\n", hdrs...)
	return p
}

// TestVolumeSymlinkTarget: an image whose mount target is a symlink to a
// host path must not get the volume (or tmpfs) mounted on the host path,
// nor have the host directory copied into a new volume.
func TestVolumeSymlinkTarget(t *testing.T) {
	d := engine(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "secret"), []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Must("run", "--name", "mk", "--network", "none", "busybox", "ln", "-s", host, "/evil")
	d.Must("commit", "mk", "evilimg")
	d.Must("rm", "mk")
	for _, m := range [][]string{
		{"-v", "hv:/evil"},
		{"--mount", "type=volume,src=hv2,dst=/evil"},
		{"--tmpfs", "/evil"},
		{"--mount", "type=bind,src=" + t.TempDir() + ",dst=/evil"},
	} {
		args := append([]string{"run", "--rm", "--network", "none"}, m...)
		args = append(args, "evilimg", "sh", "-c", "ls /evil; echo pwned > /evil/x")
		r := d.Run(args...)
		// The runtime resolves the target inside the rootfs, where the
		// link dangles: the start is refused (Docker would create the
		// directory inside the rootfs); either way nothing reaches the host.
		if r.Code != 0 && !strings.Contains(r.Stderr, "inroot") {
			t.Fatalf("%v: failed for another reason: %s", m, r)
		}
		if strings.Contains(r.Stdout, "secret") {
			t.Errorf("%v: the host directory was seen in the container: %s", m, r)
		}
		if _, err := os.Stat(filepath.Join(host, "x")); err == nil {
			t.Fatalf("%v: the container wrote into the host directory %s", m, host)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(host, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
			t.Fatalf("%v: something is mounted on the host directory", m)
		}
	}
	for _, v := range []string{"hv", "hv2"} {
		if _, err := os.Stat(filepath.Join(d.Root, "volumes", v, "_data", "secret")); err == nil {
			t.Fatalf("copy-up into %s read the host directory through the symlink", v)
		}
	}
}

// TestVolumesDockerClients drives volumes with the docker CLI and docker-py.
func TestVolumesDockerClients(t *testing.T) {
	d := engine(t)
	docker := dockerCLI(t, d)
	must := func(args ...string) string {
		t.Helper()
		r := docker(args...)
		if r.Code != 0 {
			t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
		}
		return strings.TrimSpace(r.Stdout)
	}
	must("volume", "create", "--label", "k=v", "dv")
	if got := must("volume", "ls", "--format", "{{.Name}} {{.Driver}}", "--filter", "label=k"); got != "dv local" {
		t.Fatalf("docker volume ls: %q", got)
	}
	must("run", "--rm", "--network", "none", "-v", "dv:/d", "busybox", "sh", "-c", "echo x > /d/f")
	if got := must("run", "--rm", "--network", "none", "--mount", "source=dv,target=/d,readonly", "busybox", "cat", "/d/f"); got != "x" {
		t.Fatalf("docker run --mount: %q", got)
	}
	if got := must("run", "--rm", "--network", "none", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777", "busybox", "stat", "-c", "%a", "/t"); got != "1777" {
		t.Fatalf("docker run --mount type=tmpfs: %q", got)
	}
	id := must("create", "--network", "none", "-v", "dv:/d", "-v", "/anon", "busybox", "true")
	if got := must("inspect", "--format", `{{range .Mounts}}{{.Type}}:{{.Destination}}:{{.Driver}} {{end}}`, id); got != "volume:/d:local volume:/anon:local" {
		t.Fatalf("docker inspect Mounts: %q", got)
	}
	if r := docker("volume", "rm", "dv"); r.Code == 0 || !strings.Contains(r.Stderr, "in use") {
		t.Fatalf("docker volume rm of a volume in use: %s", r)
	}
	must("rm", "-v", id)
	out := dockerPy(t, d, `
v = c.volumes.create(name='pyv', labels={'a': 'b'})
print(v.name, v.attrs['Labels'])
print(sorted(x.name for x in c.volumes.list(filters={'label': 'a=b'})))
print(c.containers.run('busybox', 'sh -c "echo py > /p/f; cat /p/f"', volumes={'pyv': {'bind': '/p', 'mode': 'rw'}}, remove=True, network_mode='none').decode().strip())
print(c.volumes.prune(filters={'all': 'true'})['VolumesDeleted'])
`)
	want := "pyv {'a': 'b'}\n['pyv']\npy\n['dv', 'pyv']"
	if out != want {
		t.Fatalf("docker-py: got\n%s\nwant\n%s", out, want)
	}
}

// TestVolumesService: a service's --mount is applied by the worker: the
// named volume is made on the node (as Swarm does), the bind and the tmpfs
// are there in the task's container; update --mount-rm removes one.
func TestVolumesService(t *testing.T) {
	c := newSwarm(t, 1, 0)
	mgr := c.managers[0]
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "h"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, mgr, "service", "create", "-d", "--name", "vs", "--stop-grace-period", "1s",
		"--mount", "type=volume,src=svcdata,dst=/data",
		"--mount", "type=bind,src="+hostDir+",dst=/h,readonly",
		"--mount", "type=tmpfs,dst=/t",
		"busybox:latest", "sh", "-c", "echo task > /data/f; sleep 3600")
	c.waitPlacement(t, mgr, "vs", 30*time.Second, "1 running", func(p placement) bool { return p.total == 1 })
	var id string
	if !pollUntil(15*time.Second, func() bool {
		id = strings.TrimSpace(mgr.Daemon.Run("ps", "-q").Stdout)
		return id != "" && !strings.Contains(id, "\n")
	}) {
		t.Fatalf("no single task container: %q", id)
	}
	out := must(t, mgr, "exec", id, "sh", "-c", "cat /h/h; grep -c ' /t tmpfs' /proc/mounts; touch /h/x 2>&1 || true")
	if !strings.Contains(out, "from host") || !strings.Contains(out, "\n1\n") || !strings.Contains(out, "Read-only file system") {
		t.Fatalf("task mounts: %q", out)
	}
	if got := strings.TrimSpace(must(t, mgr, "volume", "ls", "-q")); got != "svcdata" {
		t.Fatalf("volumes on the node: %q", got)
	}
	if !pollUntil(10*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(mgr.Daemon.Root, "volumes", "svcdata", "_data", "f"))
		return err == nil && string(b) == "task\n"
	}) {
		t.Fatal("the task's write did not reach the named volume")
	}
	expectFail(t, mgr, []string{"volume is in use"}, "volume", "rm", "svcdata")
	must(t, mgr, "service", "rm", "vs")
	if !pollUntil(20*time.Second, func() bool { return mgr.Daemon.Run("volume", "rm", "svcdata").Code == 0 }) {
		t.Fatalf("volume still in use after service rm: %s", mgr.Daemon.Run("volume", "ls"))
	}
	expectFail(t, mgr, []string{"unexpected key"}, "service", "create", "--name", "bad", "--mount", "type=volume,dst=/d,colour=red", "busybox:latest")
	if out := strings.TrimSpace(must(t, mgr, "service", "ls", "-q")); out != "" {
		t.Fatalf("a bad --mount left a service: %q", out)
	}
}
