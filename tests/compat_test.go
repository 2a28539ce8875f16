package tests

import (
	"archive/tar"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestCompatDockerClients drives the daemon with the docker CLI and
// docker-py over the defects found with real clients (issue 10, item 8).
func TestCompatDockerClients(t *testing.T) {
	d := engine(t)
	docker := dockerCLI(t, d)

	t.Run("env without =", func(t *testing.T) {
		// The docker CLI resolves a bare name itself; docker-py and the API
		// pass it through, and dockerd then removes the name (here the
		// image's PATH and an earlier entry).
		got := dockerPy(t, d, `print(c.containers.run('busybox', ['env'], environment=['FOO=1', 'BAR=2', 'BAR', 'PATH', 'UNSET'], remove=True).decode().strip())`)
		env := strings.Fields(got)
		for _, want := range []string{"FOO=1", "HOSTNAME="} {
			if !strings.Contains(got, want) {
				t.Fatalf("env FOO=1 BAR=2 BAR PATH UNSET: no %s in %q", want, env)
			}
		}
		for _, gone := range []string{"BAR", "PATH", "UNSET"} {
			if strings.Contains(got, gone) {
				t.Fatalf("env FOO=1 BAR=2 BAR PATH UNSET: %s is set: %q", gone, env)
			}
		}
	})
	t.Run("group add", func(t *testing.T) {
		got := dockerPy(t, d, `print(c.containers.run('busybox', ['id', '-G'], group_add=['2345', 'nogroup'], remove=True).decode().strip())`)
		if got != "0 2345 65534" {
			t.Fatalf("group_add 2345 nogroup: id -G %q", got)
		}
	})
	t.Run("log config type", func(t *testing.T) {
		r := docker("create", "--name", "logtype", "busybox", "true")
		if r.Code != 0 {
			t.Fatalf("docker create: %s", r)
		}
		defer d.Run("rm", "-f", "logtype")
		if r := docker("inspect", "--format", "{{.HostConfig.LogConfig.Type}} {{json .HostConfig.LogConfig.Config}}", "logtype"); strings.TrimSpace(r.Stdout) != "json-file {}" {
			t.Fatalf("HostConfig.LogConfig.Type: %s", r)
		}
	})
	t.Run("cp of the /etc files", func(t *testing.T) {
		// /etc/hostname and /etc/hosts are the container's own files
		// mounted over the image's; cp reads them, not the empty targets.
		if r := docker("run", "-d", "--name", "etccp", "--hostname", "cphost", "--add-host", "cpdb:10.7.7.7", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("docker run: %s", r)
		}
		defer d.Run("rm", "-f", "etccp")
		if r := docker("cp", "etccp:/etc/hostname", "-"); r.Code != 0 || !strings.Contains(r.Stdout, "cphost\n") {
			t.Fatalf("docker cp etccp:/etc/hostname -: %s", r)
		}
		got := dockerPy(t, d, `import io, tarfile
bits, stat = c.containers.get('etccp').get_archive('/etc/hosts')
t = tarfile.open(fileobj=io.BytesIO(b''.join(bits)))
print(stat['size'] > 0, t.extractfile(t.getmembers()[0]).read().decode())`)
		if !strings.HasPrefix(got, "True") || !strings.Contains(got, "10.7.7.7\tcpdb") {
			t.Fatalf("docker-py get_archive /etc/hosts: %q", got)
		}
	})
	t.Run("ps -s", func(t *testing.T) {
		if r := docker("run", "-d", "--name", "sized", "busybox", "sh", "-c", "dd if=/dev/zero of=/big bs=1024 count=1024 2>/dev/null; sleep 100"); r.Code != 0 {
			t.Fatalf("docker run: %s", r)
		}
		defer d.Run("rm", "-f", "sized")
		waitFor(t, "docker ps -s to count the 1 MiB file", func() bool {
			r := docker("ps", "-s", "--filter", "name=sized", "--format", "{{.Size}}")
			return strings.HasPrefix(r.Stdout, "1.05MB (virtual ")
		})
		if r := docker("inspect", "--size", "--format", "{{.SizeRw}}", "sized"); strings.TrimSpace(r.Stdout) != "1048576" {
			t.Fatalf("docker inspect --size: %s", r)
		}
	})
	t.Run("docker-py run options", func(t *testing.T) {
		got := dockerPy(t, d, `print(c.containers.run('busybox', ['sh', '-c', 'grep -h -e pyhost -e nameserver /etc/hosts /etc/resolv.conf; grep CapEff /proc/self/status; cat /proc/1/cmdline | tr "\\0" " "'],
    remove=True, init=True, cap_add=['NET_ADMIN'], cap_drop=['CHOWN'], dns=['192.0.2.9'], extra_hosts={'pyhost': '10.3.3.3'},
    security_opt=['no-new-privileges'], read_only=True, stop_signal='SIGUSR1').decode())`)
		for _, want := range []string{"10.3.3.3\tpyhost", "nameserver 192.0.2.9", "CapEff:\t00000000a80435fa", "/dev/init container-init -- sh -c"} {
			if !strings.Contains(got, want) {
				t.Fatalf("docker-py run with init, cap_add, cap_drop, dns, extra_hosts: no %q in\n%s", want, got)
			}
		}
	})
	t.Run("remove link=False", func(t *testing.T) {
		// docker-py sends ?v=False&link=False&force=False.
		got := dockerPy(t, d, `ct = c.containers.create('busybox', 'true', name='pyrm')
ct.remove()
print(len(c.containers.list(all=True, filters={'name': 'pyrm'})))`)
		if got != "0" {
			t.Fatalf("containers after remove: %s", got)
		}
	})
	t.Run("exit code after kill", func(t *testing.T) {
		if r := docker("run", "-d", "--name", "killed", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("docker run -d: %s", r)
		}
		defer d.Run("rm", "-f", "killed")
		if r := docker("kill", "killed"); r.Code != 0 {
			t.Fatalf("docker kill: %s", r)
		}
		if r := docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "killed"); strings.TrimSpace(r.Stdout) != "exited 137" {
			t.Fatalf("right after kill: %s, want exited 137", r)
		}
		got := dockerPy(t, d, `ct = c.containers.run('busybox', ['sleep', '100'], detach=True, name='pykilled')
ct.kill()
ct.reload()
print(ct.attrs['State']['ExitCode'])
ct.remove(force=True)`)
		if got != "137" {
			t.Fatalf("docker-py: exit code right after kill: %s", got)
		}
	})
	// Found running the docker CLI against dockerd 20.10 and shoal side by
	// side (session 23); each line is what dockerd printed.
	t.Run("side by side with dockerd", func(t *testing.T) {
		if r := docker("run", "-d", "--name", "sbs", "busybox", "sh", "-c", "sleep 100; echo a b"); r.Code != 0 {
			t.Fatalf("docker run -d: %s", r)
		}
		defer d.Run("rm", "-f", "sbs")
		if r := docker("exec", "-u", "nosuchuser", "sbs", "id"); r.Code != 126 || strings.TrimSpace(r.Stdout+r.Stderr) != "unable to find user nosuchuser: no matching entries in passwd file" {
			t.Errorf("exec as an unknown user: %s, want exit 126 and dockerd's message", r)
		}
		if r := docker("ps", "--filter", "name=sbs", "--format", "{{.Command}}", "--no-trunc"); strings.TrimSpace(r.Stdout) != `"sh -c 'sleep 100; echo a b'"` {
			t.Errorf("ps Command: %s", r)
		}
		if r := docker("image", "inspect", "nosuchimage"); !strings.Contains(r.Stderr, "No such image: nosuchimage:latest") {
			t.Errorf("image inspect of an unknown name: %s", r)
		}
		if r := docker("inspect", "--format", "{{.HostConfig.ShmSize}} {{.HostConfig.IpcMode}} {{.HostConfig.PidsLimit}} {{.HostConfig.MemorySwappiness}}", "sbs"); strings.TrimSpace(r.Stdout) != "67108864 private <nil> <nil>" {
			t.Errorf("inspect's defaults: %s", r)
		}
		if r := docker("top", "sbs", "-o", "pid,stat,comm"); r.Code != 0 || !strings.Contains(r.Stdout, "Ss") {
			t.Errorf("top: pid 1 leads its session (Ss): %s", r)
		}
		if r := docker("pause", "sbs"); r.Code != 0 {
			t.Fatalf("pause: %s", r)
		}
		if r := docker("exec", "sbs", "true"); !strings.Contains(r.Stderr, "Container sbs is paused, unpause the container before exec") {
			t.Errorf("exec in a paused container: %s", r)
		}
		docker("unpause", "sbs")
		// dockerd's words for a kill of a stopped container, a rename onto a
		// taken name and a create without a command.
		docker("create", "--name", "sbs2", "busybox", "true")
		defer d.Run("rm", "-f", "sbs2")
		if r := docker("kill", "sbs2"); !strings.Contains(r.Stderr, "Cannot kill container: sbs2: Container ") || !strings.Contains(r.Stderr, " is not running") {
			t.Errorf("kill of a stopped container: %s", r)
		}
		if r := docker("rename", "sbs2", "sbs"); !strings.Contains(r.Stderr, "Error when allocating new name: Conflict. The container name \"/sbs\" is already in use") {
			t.Errorf("rename onto a taken name: %s", r)
		}
		if r := docker("run", "--rm", "-w", "relative", "busybox", "pwd"); r.Code != 125 || !strings.Contains(r.Stderr, "the working directory 'relative' is invalid, it needs to be an absolute path") {
			t.Errorf("run -w relative: %s", r)
		}
		if r := docker("create", "busybox"); r.Code == 0 || !strings.Contains(r.Stderr, "No command specified") {
			t.Errorf("create of an image without a command, none given: %s", r)
		}
	})
	t.Run("HOME", func(t *testing.T) {
		// As runc sets it: the user's home from /etc/passwd, "/" for a
		// user it does not list, for exec's user too; a HOME given stays.
		if r := docker("run", "-d", "--name", "home", "busybox", "sh", "-c", `echo "u:x:7:7::/home/u:/bin/sh" >> /etc/passwd; sleep 100`); r.Code != 0 {
			t.Fatalf("docker run: %s", r)
		}
		defer d.Run("rm", "-f", "home")
		waitFor(t, "the passwd entry", func() bool { return d.Run("exec", "home", "grep", "-q", "^u:", "/etc/passwd").Code == 0 })
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"exec", "-u", "u", "home"}, "/home/u"},
			{[]string{"exec", "-u", "4242", "home"}, "/"},
			{[]string{"exec", "-u", "u", "-e", "HOME=/z", "home"}, "/z"},
		} {
			if r := docker(append(c.args, "sh", "-c", "echo $HOME")...); strings.TrimSpace(r.Stdout) != c.want {
				t.Errorf("%v: HOME %s, want %s", c.args, r, c.want)
			}
		}
		if r := docker("run", "--rm", "-u", "4242", "busybox", "sh", "-c", "echo $HOME"); strings.TrimSpace(r.Stdout) != "/" {
			t.Errorf("run as a user without a passwd entry: HOME %s, want /", r)
		}
	})
	t.Run("cp of a symlink", func(t *testing.T) {
		if r := docker("run", "-d", "--name", "cplink", "busybox", "sh", "-c", "echo 1 > /f; ln -s /f /link; ln -s f /rel; sleep 100"); r.Code != 0 {
			t.Fatalf("docker run: %s", r)
		}
		defer d.Run("rm", "-f", "cplink")
		entry := func(args ...string) (*tar.Header, string) {
			r := docker(append([]string{"cp"}, args...)...)
			tr := tar.NewReader(strings.NewReader(r.Stdout))
			h, err := tr.Next()
			if r.Code != 0 || err != nil {
				t.Fatalf("docker cp %v: %s %v", args, r, err)
			}
			b, _ := io.ReadAll(tr)
			return h, string(b)
		}
		waitFor(t, "the links", func() bool { return d.Run("exec", "cplink", "test", "-L", "/rel").Code == 0 })
		// The link itself, as dockerd; with -L what it points to, named as
		// its target (dockerd's stat gives the CLI the resolved path).
		if h, _ := entry("cplink:/link", "-"); h.Typeflag != tar.TypeSymlink || h.Name != "link" || h.Linkname != "/f" {
			t.Errorf("cp of a symlink: %+v", h)
		}
		for _, link := range []string{"/link", "/rel"} {
			if h, body := entry("-L", "cplink:"+link, "-"); h.Typeflag != tar.TypeReg || h.Name != "f" || body != "1\n" {
				t.Errorf("cp -L of %s: %+v %q", link, h, body)
			}
		}
		// A trailing / names a directory: onto a file it is refused, the
		// file left as it was.
		src := filepath.Join(t.TempDir(), "x")
		os.WriteFile(src, []byte("new\n"), 0o644)
		if r := docker("cp", src, "cplink:/f/"); r.Code == 0 {
			t.Errorf("cp onto a file with a trailing /: %s", r)
		}
		if r := docker("exec", "cplink", "cat", "/f"); r.Stdout != "1\n" {
			t.Errorf("the file after a refused cp: %s", r)
		}
	})
	t.Run("attach logs without stream", func(t *testing.T) {
		// docker-py's attach(stream=False, logs=True) sends logs=1&stream=0
		// and reads to the end: dockerd replays the logs and ends (the
		// daemon attached to the live streams and never answered more).
		// docker-py then reads the stream from the raw socket, past what its
		// buffered reader of the answer took: the replay must not come in one
		// read with the answer (it was lost there every time).
		// docker-py takes the timeout off an attach's socket: the alarm
		// ends a script whose attach never ends.
		got := dockerPy(t, d, `import signal
signal.alarm(30)
a = docker.APIClient(base_url='unix://`+d.Socket+`', timeout=10)
ct = a.create_container('busybox', ['sh', '-c', 'echo out; sleep 0.2; echo err >&2'])
a.start(ct)
a.wait(ct)
print(json.dumps([a.attach(ct, stream=False, logs=True).decode() for _ in range(10)]))
print(json.dumps([a.attach(ct, stream=False, logs=True, stdout=False).decode(), a.attach(ct, stream=False, logs=False).decode()]))
a.remove_container(ct)`)
		lines := strings.Split(got, "\n")
		if len(lines) != 2 || lines[0] != `["out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n", "out\nerr\n"]` ||
			lines[1] != `["err\n", ""]` {
			t.Fatalf("docker-py attach(stream=False, logs=True) 10 times, then stdout=False, then logs=False: %s", got)
		}
	})
	t.Run("inspect of a connected network", func(t *testing.T) {
		// docker-py's test_connect_with_aliases and test_create_with_ipv4_address:
		// inspect shows every network the container is on, with the aliases
		// and the --ip asked for (IPAMConfig); the connected network was
		// missing and IPAMConfig null.
		sub := userSubnet(5)
		userNetwork(t, d, "pyconn", "c", "--subnet", sub)
		b := netip.MustParsePrefix(sub).Addr().As4()
		b[3] += 40 // inside the /26
		ip := netip.AddrFrom4(b).String()
		got := dockerPy(t, d, `a = c.api
on = a.create_container('busybox', 'top', name='pyon', host_config=a.create_host_config(network_mode='pyconn'),
    networking_config=a.create_networking_config({'pyconn': a.create_endpoint_config(ipv4_address='`+ip+`')}))
a.start(on)
br = a.create_container('busybox', 'top', name='pybr')
a.start(br)
a.connect_container_to_network(br, 'pyconn', aliases=['foo', 'bar'])
n1 = a.inspect_container(on)['NetworkSettings']['Networks']
n2 = a.inspect_container(br)['NetworkSettings']['Networks']
print(json.dumps([n1['pyconn']['IPAMConfig'], n1['pyconn']['IPAddress'], sorted(n2), n2['pyconn']['Aliases'], n2['pyconn']['IPAddress'] != '', n2['bridge']['IPAMConfig']]))
a.remove_container(on, force=True)
a.remove_container(br, force=True)`)
		want := `[{"IPv4Address": "` + ip + `"}, "` + ip + `", ["bridge", "pyconn"], ["foo", "bar"], true, null]`
		if got != want {
			t.Fatalf("docker-py inspect after create with ipv4_address and connect with aliases:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("mac address refused", func(t *testing.T) {
		// docker-py's create_container(mac_address=...) and an endpoint's
		// MacAddress were ignored: the container got the MAC derived from
		// its IP. Both are refused, and nothing is created. The endpoint's
		// is written as the API's body, since Debian's docker-py (5.0.3)
		// has no create_endpoint_config(mac_address=).
		got := dockerPy(t, d, `a = c.api
for kw in ({'mac_address': '02:42:ac:11:00:0a'}, {'networking_config': {'EndpointsConfig': {'bridge': {'MacAddress': '02:42:ac:11:00:0b'}}}}):
    try:
        a.create_container('busybox', 'true', name='pymac', **kw)
        print('created')
    except docker.errors.APIError as e:
        print(e.status_code, e.explanation)
print(len(a.containers(all=True, filters={'name': 'pymac'})))`)
		want := strings.Repeat("400 a MAC address (--mac-address) is not supported: a container's interface gets one derived from its IP address\n", 2) + "0"
		if got != want {
			d.Run("rm", "-f", "pymac")
			t.Fatalf("docker-py create with a MAC address:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("archive in volumes and binds", func(t *testing.T) {
		// docker-py's ArchiveTest: put_archive into a volume of a created
		// container, get_archive out of one that has exited. The archive
		// endpoints read the rootfs alone, without the container's mounts
		// ("Could not find the file /vol1"), whether it ran or not.
		bind := t.TempDir()
		if err := os.WriteFile(filepath.Join(bind, "f"), []byte("bound\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got := dockerPy(t, d, `import io, tarfile
a = c.api
def tar(name, data):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w') as t:
        i = tarfile.TarInfo(name)
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))
    return b.getvalue()
def untar(bits):
    t = tarfile.open(fileobj=io.BytesIO(b''.join(bits)))
    return sorted((m.name, t.extractfile(m).read().decode() if m.isfile() else '') for m in t.getmembers())
ct = a.create_container('busybox', ['sh', '-c', 'cat /vol1/in; echo out > /vol1/out'], volumes=['/vol1', '/ro'],
    host_config=a.create_host_config(binds={'`+bind+`': {'bind': '/ro', 'mode': 'ro'}}))
print(a.put_archive(ct, '/vol1', tar('in', b'put\n')))
try:
    a.put_archive(ct, '/ro', tar('x', b'x'))
except docker.errors.APIError as e:
    print(e.explanation)
a.start(ct)
a.wait(ct)
print(a.logs(ct).decode().strip())
bits, st = a.get_archive(ct, '/vol1/out')
print(st['name'], st['size'], untar(bits))
print(untar(a.get_archive(ct, '/ro')[0]))
a.remove_container(ct, v=True)`)
		want := "True\nmounted volume is marked read-only\nput\nout 4 [('out', 'out\\n')]\n[('ro', ''), ('ro/f', 'bound\\n')]"
		if got != want {
			t.Fatalf("docker-py put_archive and get_archive in a volume and a read-only bind:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("docker-py container lifecycle details", func(t *testing.T) {
		// From docker-py's api_container_test and api_image_test, each
		// line what dockerd answers: inspect names the runtime (KeyError:
		// 'Runtime'); a container waiting to be restarted is not removed
		// without force (it was); prune counts the space of the files the
		// containers wrote (SpaceReclaimed was 0); a commit right after the
		// start of a short command commits (500 "container does not exist"
		// when the process had exited before the engine recorded it).
		got := dockerPy(t, d, `a = c.api
ct = a.create_container('busybox', 'true')
print(a.inspect_container(ct)['HostConfig']['Runtime'])
a.remove_container(ct)
ct = a.create_container('busybox', ['false'], host_config=a.create_host_config(restart_policy={'Name': 'always'}, network_mode='none'))
a.start(ct)
for _ in range(100):
    if a.inspect_container(ct)['State']['Restarting']:
        break
    time.sleep(0.05)
try:
    a.remove_container(ct)
    print('removed')
except docker.errors.APIError as e:
    print(e.status_code, 'stop the container before' in e.explanation.lower())
a.remove_container(ct, force=True)
ct = a.create_container('busybox', ['sh', '-c', 'head -c 5000 /dev/zero > /data'], labels={'pyprune': '1'})
a.start(ct)
a.wait(ct)
r = a.prune_containers(filters={'label': 'pyprune'})
print(r['ContainersDeleted'] == [ct['Id']], r['SpaceReclaimed'])
fails = []
for _ in range(20):
    ct = a.create_container('busybox', ['touch', '/test'])
    a.start(ct)
    try:
        a.remove_image(a.commit(ct)['Id'])
    except docker.errors.APIError as e:
        fails.append(e.explanation)
    a.remove_container(ct, force=True)
print(fails)`)
		want := "shoal\n409 True\nTrue 5000\n[]"
		if got != want {
			t.Fatalf("docker-py: runtime, remove while restarting, prune, commit right after start:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("build stderr", func(t *testing.T) {
		// docker-py's test_build_stderr_data: dockerd's builder sends a
		// RUN's stderr between the terminal codes for red and back, one
		// stream message per write (it came plain).
		got := dockerPy(t, d, `import io
lines = [m.get('stream') for m in c.api.build(fileobj=io.BytesIO(b'FROM busybox\nRUN sh -c ">&2 echo to stderr; echo to stdout"'), decode=True, nocache=True, rm=True)]
print(json.dumps(sorted(l for l in lines if l and 'to std' in l and not l.startswith('Step'))))`)
		if want := `["\u001b[91mto stderr\n\u001b[0m", "to stdout\n"]`; got != want {
			t.Fatalf("docker-py build stream of a RUN's stderr and stdout: %s, want %s", got, want)
		}
	})
	t.Run("load of a bad archive", func(t *testing.T) {
		// dockerd answers a load 200 and puts the error in the stream:
		// docker-py's images.load raises ImageLoadError from it (it got an
		// APIError from a 400), and the CLIs print it and exit 1.
		got := dockerPy(t, d, `try:
    c.images.load(b'abc')
    print('loaded')
except docker.errors.ImageLoadError as e:
    print('ImageLoadError', 'load:' in str(e))`)
		if got != "ImageLoadError True" {
			t.Fatalf("docker-py images.load(b'abc'): %s", got)
		}
		bad := filepath.Join(t.TempDir(), "bad.tar")
		if err := os.WriteFile(bad, []byte("abc"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, r := range []harness.Result{docker("load", "-i", bad), d.Run("load", "-i", bad)} {
			if r.Code != 1 || !strings.Contains(r.Stderr, "load:") {
				t.Errorf("load -i of a bad archive: %s", r)
			}
		}
	})
	t.Run("list and prune filters", func(t *testing.T) {
		for _, n := range []string{"f1", "f2", "f3"} {
			args := []string{"create", "--name", n, "--network", "none"}
			switch n {
			case "f1":
				args = append(args, "-l", "keep=1")
			case "f2":
				args = append(args, "-v", "fvol:/fv")
			}
			if r := docker(append(args, "busybox", "true")...); r.Code != 0 {
				t.Fatalf("docker create: %s", r)
			}
			defer d.Run("rm", "-f", n)
			time.Sleep(1100 * time.Millisecond) // Created is shown to the second
		}
		defer d.Run("volume", "rm", "fvol")
		for _, c := range []struct{ filter, want string }{
			{"before=f3", "f2 f1"}, {"since=f1", "f3 f2"}, {"volume=fvol", "f2"}, {"volume=/fv", "f2"}, {"is-task=true", ""},
		} {
			r := docker("ps", "-a", "--filter", c.filter, "--filter", "name=f", "--format", "{{.Names}}")
			if got := strings.Join(strings.Fields(r.Stdout), " "); r.Code != 0 || got != c.want {
				t.Errorf("ps --filter %s: %q (%s), want %q", c.filter, got, r, c.want)
			}
		}
		if r := docker("container", "prune", "-f", "--filter", "label!=keep", "--filter", "until=1s"); r.Code != 0 {
			t.Fatalf("container prune: %s", r)
		}
		if r := docker("ps", "-a", "--filter", "name=f", "--format", "{{.Names}}"); strings.TrimSpace(r.Stdout) != "f1" {
			t.Errorf("after prune --filter label!=keep: %s", r)
		}
	})
	t.Run("ps filters as dockerd", func(t *testing.T) {
		// ancestor names an image by any of its references (dockerd
		// resolves it to the image), network by name or ID prefix; values
		// that can never match are refused, not answered with nothing.
		if r := docker("network", "create", "psnet"); r.Code != 0 {
			t.Fatalf("network create: %s", r)
		}
		defer d.Run("network", "rm", "psnet")
		if r := docker("tag", "busybox", "psalias:1"); r.Code != 0 {
			t.Fatalf("tag: %s", r)
		}
		defer d.Run("rmi", "psalias:1")
		if r := docker("create", "--name", "psf", "--network", "psnet", "busybox", "true"); r.Code != 0 {
			t.Fatalf("create: %s", r)
		}
		defer d.Run("rm", "-f", "psf")
		netID := strings.TrimSpace(docker("network", "inspect", "-f", "{{.Id}}", "psnet").Stdout)
		for _, c := range []struct{ filter, want string }{
			{"ancestor=psalias:1", "psf"}, {"ancestor=busybox", "psf"}, {"ancestor=nosuchimage", ""},
			{"network=psnet", "psf"}, {"network=" + netID[:12], "psf"}, {"network=bridge", ""},
		} {
			r := docker("ps", "-a", "--filter", c.filter, "--filter", "name=psf", "--format", "{{.Names}}")
			if got := strings.TrimSpace(r.Stdout); r.Code != 0 || got != c.want {
				t.Errorf("ps --filter %s: %q (%s), want %q", c.filter, got, r, c.want)
			}
		}
		for _, c := range []struct{ filter, want string }{
			{"status=bogus", "invalid filter 'status=bogus': invalid value for state (bogus)"},
			{"exited=x", "invalid filter 'exited=x'"},
			{"is-task=maybe", "invalid filter 'is-task=[maybe]'"},
			{"health=fine", "invalid filter 'health=fine'"},
		} {
			if r := docker("ps", "-a", "--filter", c.filter); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
				t.Errorf("ps --filter %s: %s, want an error with %q", c.filter, r, c.want)
			}
		}
	})
	t.Run("commit --change", func(t *testing.T) {
		// The changes go over the container's config; its labels and stop
		// signal are the image's too, as dockerd's commit.
		if r := docker("run", "--name", "chg", "-l", "run=1", "--stop-signal", "SIGUSR1", "-e", "A=1", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "chg")
		if r := docker("commit", "-c", "ENV B=2", "-c", "LABEL chg=2", "-c", `CMD ["echo", "hi"]`, "-c", "WORKDIR /tmp", "-c", "EXPOSE 80", "chg", "chg:1"); r.Code != 0 {
			t.Fatalf("commit -c: %s", r)
		}
		defer d.Run("rmi", "chg:1")
		want := `[A=1 B=2] map[chg:2 run:1] [echo hi] /tmp map[80/tcp:{}] SIGUSR1`
		if r := docker("image", "inspect", "-f", "{{.Config.Env}} {{.Config.Labels}} {{.Config.Cmd}} {{.Config.WorkingDir}} {{.Config.ExposedPorts}} {{.Config.StopSignal}}", "chg:1"); strings.TrimSpace(r.Stdout) != want {
			t.Errorf("image config: %s, want %s", r, want)
		}
		if r := docker("run", "--rm", "chg:1"); strings.TrimSpace(r.Stdout) != "hi" {
			t.Errorf("run of the commit: %s", r)
		}
		if r := docker("commit", "-c", "RUN true", "chg", "chg:2"); r.Code == 0 || !strings.Contains(r.Stderr, "RUN is not a valid change command") {
			t.Errorf("commit -c RUN: %s", r)
		}
	})
	t.Run("image inspect for API 1.50", func(t *testing.T) {
		// The docker CLI 28 speaks 1.50, for which dockerd still answers
		// Parent, Comment, DockerVersion, Author and the image config's
		// empty fields. A template with a JSON name (.Id) runs over the
		// raw answer, where a missing key fails it.
		r := docker("image", "inspect", "-f", "{{.Id}}|{{.Parent}}|{{.Comment}}|{{.Author}}|{{.DockerVersion}}|{{.Config.Entrypoint}}|{{.Config.WorkingDir}}|{{.Config.User}}", "busybox")
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "sha256:") || strings.Count(r.Stdout, "|") != 7 {
			t.Errorf("image inspect of the legacy fields: %s", r)
		}
	})
	t.Run("info plugins", func(t *testing.T) {
		// docker info prints Plugins' Volume, Network and Log lines; they
		// were empty.
		r := docker("info", "--format", "{{.Plugins.Volume}} {{.Plugins.Network}} {{.Plugins.Log}}")
		if got := strings.TrimSpace(r.Stdout); got != "[local] [bridge host null overlay] [json-file local]" {
			t.Errorf("info Plugins: %s", r)
		}
	})
	t.Run("ps of volume mounts", func(t *testing.T) {
		// A volume is a volume in the list as in inspect (name, driver):
		// ps's MOUNTS and system df -v's LOCAL VOLUMES come from it.
		if r := docker("create", "--name", "psm", "-v", "psmvol:/d", "busybox", "true"); r.Code != 0 {
			t.Fatalf("create: %s", r)
		}
		defer d.Run("volume", "rm", "psmvol")
		defer d.Run("rm", "-f", "psm")
		r := docker("ps", "-a", "--filter", "name=psm", "--format", "{{.LocalVolumes}} {{.Mounts}}")
		if got := strings.TrimSpace(r.Stdout); got != "1 psmvol" {
			t.Errorf("ps LocalVolumes and Mounts: %s, want 1 psmvol", r)
		}
	})
	t.Run("rmi of a running container's image", func(t *testing.T) {
		// As dockerd: -f does not delete an image a running container
		// uses. By ID it is refused; by its last tag the tag goes and the
		// image stays, nameless. The messages keep dockerd's "conflict: ".
		if r := docker("run", "--name", "rmisrc", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "rmisrc")
		if r := docker("commit", "rmisrc", "rmionly:1"); r.Code != 0 {
			t.Fatalf("commit: %s", r)
		}
		id := strings.TrimSpace(docker("image", "inspect", "-f", "{{.ID}}", "rmionly:1").Stdout)
		defer d.Run("rmi", "-f", id)
		if r := docker("run", "-d", "--name", "rmiuser", "rmionly:1", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "rmiuser")
		if r := docker("rmi", "rmionly:1"); r.Code == 0 || !strings.Contains(r.Stderr, `conflict: unable to remove repository reference "rmionly:1" (must force)`) {
			t.Errorf("rmi of a used image: %s", r)
		}
		for _, args := range [][]string{{"rmi", "-f", id[7:19]}, {"rmi", id[7:19]}} {
			if r := docker(args...); r.Code == 0 || !strings.Contains(r.Stderr, "conflict: unable to delete "+id[7:19]+" (cannot be forced) - image is being used by running container") {
				t.Errorf("%s of a running container's image: %s", strings.Join(args, " "), r)
			}
		}
		// By ID, several repositories come before a stopped container
		// (rmisrc, of busybox).
		bb := strings.TrimSpace(docker("image", "inspect", "-f", "{{.ID}}", "busybox").Stdout)[7:19]
		if r := docker("tag", "busybox", "rmiother:1"); r.Code != 0 {
			t.Fatalf("tag: %s", r)
		}
		if r := docker("rmi", bb); r.Code == 0 || !strings.Contains(r.Stderr, "conflict: unable to delete "+bb+" (must be forced) - image is referenced in multiple repositories") {
			t.Errorf("rmi by ID of an image of two repositories: %s", r)
		}
		docker("rmi", "rmiother:1")
		if r := docker("rmi", bb); r.Code == 0 || !strings.Contains(r.Stderr, "conflict: unable to delete "+bb+" (must be forced) - image is being used by stopped container") {
			t.Errorf("rmi by ID of a stopped container's image: %s", r)
		}
		if r := docker("rmi", "-f", "rmionly:1"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "Untagged: rmionly:1" {
			t.Errorf("rmi -f of a running container's image by its tag: %s", r)
		}
		if r := docker("image", "inspect", "-f", "{{.ID}} {{len .RepoTags}}", id); strings.TrimSpace(r.Stdout) != id+" 0" {
			t.Errorf("the image after rmi -f of its tag: %s", r)
		}
		if r := docker("inspect", "-f", "{{.State.Running}}", "rmiuser"); strings.TrimSpace(r.Stdout) != "true" {
			t.Errorf("the container after rmi -f of its image: %s", r)
		}
	})
	t.Run("volume rm of a volume in use", func(t *testing.T) {
		// dockerd's message, once: it was "volume is in use: remove ...".
		r := docker("run", "-d", "--name", "vinuse", "-v", "vinuse:/d", "busybox", "sleep", "100")
		if r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		id := strings.TrimSpace(r.Stdout)
		defer d.Run("volume", "rm", "vinuse")
		defer d.Run("rm", "-f", "vinuse")
		want := "Error response from daemon: remove vinuse: volume is in use - [" + id + "]"
		if r := docker("volume", "rm", "vinuse"); r.Code == 0 || strings.TrimSpace(r.Stderr) != want {
			t.Errorf("volume rm of a volume in use: %s, want %q", r, want)
		}
	})
	t.Run("network ls --filter dangling", func(t *testing.T) {
		// One boolean, as dockerd: other values listed the networks in use.
		for _, c := range []struct{ filter, want string }{
			{"dangling=x", `invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")`},
			{"dangling=true --filter dangling=false", `got more than one value for filter key "dangling"`},
		} {
			args := append([]string{"network", "ls", "--filter"}, strings.Fields(c.filter)...)
			if r := docker(args...); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
				t.Errorf("network ls --filter %s: %s, want %q", c.filter, r, c.want)
			}
		}
		if r := docker("network", "ls", "--filter", "dangling=false", "--format", "{{.Name}}"); r.Code != 0 || !strings.Contains(r.Stdout, "bridge") {
			t.Errorf("network ls --filter dangling=false: %s", r)
		}
	})
	t.Run("LogPath of the log drivers", func(t *testing.T) {
		// dockerd shows the json-file's path only: the local driver's file
		// is not JSON lines, and none has no file.
		for drv, want := range map[string]bool{"json-file": true, "local": false, "none": false} {
			name := "lp" + strings.ReplaceAll(drv, "-", "")
			if r := docker("create", "--name", name, "--log-driver", drv, "busybox", "true"); r.Code != 0 {
				t.Fatalf("create --log-driver %s: %s", drv, r)
			}
			defer d.Run("rm", "-f", name)
			r := docker("inspect", "-f", "{{.LogPath}}", name)
			if got := strings.TrimSpace(r.Stdout); (got != "") != want || want && !strings.HasSuffix(got, "-json.log") {
				t.Errorf("LogPath with --log-driver %s: %s", drv, r)
			}
		}
	})
	t.Run("images --filter dangling", func(t *testing.T) {
		// One boolean, as dockerd: other values were read as false. (image
		// prune sends its own dangling=true beside one given, and then,
		// as dockerd's GetBoolOrDefault, a value other than false is
		// ignored.)
		if r := docker("images", "--filter", "dangling=x"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid filter 'dangling=[x]'") {
			t.Errorf("images --filter dangling=x: %s", r)
		}
		if r := docker("images", "--filter", "dangling=true", "--filter", "dangling=false"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid filter 'dangling=[false true]'") {
			t.Errorf("images --filter dangling=true --filter dangling=false: %s", r)
		}
	})
	t.Run("run --platform of another platform", func(t *testing.T) {
		// dockerd refuses the image it has for another platform (404, so
		// the CLI tries a pull); the image ran as if no platform was given.
		if r := docker("create", "--platform", "linux/s390x", "--pull", "never", "busybox", "true"); r.Code == 0 || !strings.Contains(r.Stderr, "image with reference busybox was found but its platform (linux/amd64) does not match the specified platform (linux/s390x)") {
			t.Errorf("create --platform linux/s390x: %s", r)
		}
		r := docker("create", "--platform", "linux/"+runtime.GOARCH, "busybox", "true")
		if r.Code != 0 {
			t.Fatalf("create --platform of the image's: %s", r)
		}
		d.Run("rm", strings.TrimSpace(r.Stdout))
	})
	t.Run("image tag events", func(t *testing.T) {
		// Named in the familiar form, and commit tags too, as dockerd's.
		if r := docker("run", "--name", "tagev", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "tagev")
		since := strconv.FormatInt(time.Now().Unix()-1, 10)
		docker("tag", "busybox", "tagev1")
		defer d.Run("rmi", "tagev1")
		docker("commit", "tagev", "tagev2:x")
		defer d.Run("rmi", "tagev2:x")
		time.Sleep(1100 * time.Millisecond)
		r := docker("events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix(), 10), "--filter", "type=image", "--filter", "event=tag", "--format", "{{.Actor.Attributes.name}}")
		var got []string // other subtests tag images in that second too
		for _, n := range strings.Fields(r.Stdout) {
			if strings.HasPrefix(n, "tagev") || strings.Contains(n, "/tagev") {
				got = append(got, n)
			}
		}
		if strings.Join(got, " ") != "tagev1:latest tagev2:x" {
			t.Errorf("image tag events: %s, want tagev1:latest tagev2:x", r)
		}
	})
	t.Run("LastTagTime", func(t *testing.T) {
		// Set when the image is tagged here, as dockerd's Metadata; an
		// image given no tag (a commit without a repository) has none.
		if r := docker("run", "--name", "lttsrc", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "lttsrc")
		r := docker("commit", "lttsrc")
		if r.Code != 0 {
			t.Fatalf("commit: %s", r)
		}
		id := strings.TrimSpace(r.Stdout)
		defer d.Run("rmi", "-f", id)
		format := "{{.Metadata.LastTagTime.UTC.Format \"2006-01-02T15:04:05.000000000Z\"}}"
		if r := docker("image", "inspect", "-f", format, id); strings.TrimSpace(r.Stdout) != "0001-01-01T00:00:00.000000000Z" {
			t.Errorf("LastTagTime of an untagged commit: %s", r)
		}
		before := time.Now().UTC()
		if r := docker("tag", id, "ltt:1"); r.Code != 0 {
			t.Fatalf("tag: %s", r)
		}
		r = docker("image", "inspect", "-f", format, "ltt:1")
		got, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(r.Stdout))
		if err != nil || got.Before(before.Add(-time.Second)) || got.After(time.Now().Add(time.Second)) {
			t.Errorf("LastTagTime after tag at %s: %s", before.Format(time.RFC3339Nano), r)
		}
	})
	t.Run("run on a missing network", func(t *testing.T) {
		// The refusal must not be a 404: the docker CLI took it for a
		// missing image and tried to pull busybox.
		r := docker("run", "--rm", "--network", "nosuchnet", "busybox", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "network nosuchnet not found") || strings.Contains(r.Stderr, "Unable to find image") {
			t.Errorf("run --network nosuchnet: %s", r)
		}
	})
	t.Run("exposed ports", func(t *testing.T) {
		// As dockerd: the image's EXPOSE is the container's, and a running
		// container's unpublished exposed ports are listed without a host port.
		if r := docker("run", "--name", "expsrc", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "expsrc")
		if r := docker("commit", "-c", "EXPOSE 5000", "expsrc", "expimg"); r.Code != 0 {
			t.Fatalf("commit: %s", r)
		}
		defer d.Run("rmi", "expimg")
		if r := docker("run", "-d", "--name", "expose", "--expose", "7000/udp", "expimg", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "expose")
		if r := docker("ps", "--filter", "name=expose", "--format", "{{.Ports}}"); strings.TrimSpace(r.Stdout) != "5000/tcp, 7000/udp" {
			t.Errorf("ps Ports: %s, want 5000/tcp, 7000/udp", r)
		}
		want := `{"5000/tcp":{},"7000/udp":{}} {"5000/tcp":null,"7000/udp":null}`
		if r := docker("inspect", "-f", "{{json .Config.ExposedPorts}} {{json .NetworkSettings.Ports}}", "expose"); strings.TrimSpace(r.Stdout) != want {
			t.Errorf("inspect: %s, want %s", r, want)
		}
	})
	t.Run("info counts a paused container", func(t *testing.T) {
		if r := docker("run", "-d", "--name", "infopause", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "infopause")
		before := docker("info", "--format", "{{.ContainersRunning}} {{.ContainersPaused}}").Stdout
		if r := docker("pause", "infopause"); r.Code != 0 {
			t.Fatalf("pause: %s", r)
		}
		defer d.Run("unpause", "infopause")
		var run0, paused0, run1, paused1 int
		fmt.Sscan(before, &run0, &paused0)
		fmt.Sscan(docker("info", "--format", "{{.ContainersRunning}} {{.ContainersPaused}}").Stdout, &run1, &paused1)
		if run1 != run0-1 || paused1 != paused0+1 {
			t.Errorf("info after a pause: running %d -> %d, paused %d -> %d; want one moved from running to paused", run0, run1, paused0, paused1)
		}
	})
	t.Run("stats of a host-network container", func(t *testing.T) {
		// No interfaces of its own: NET I/O 0B / 0B, as dockerd, not the host's.
		if r := docker("run", "-d", "--name", "statshost", "--network", "host", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "statshost")
		if r := docker("stats", "--no-stream", "--format", "{{.NetIO}}", "statshost"); strings.TrimSpace(r.Stdout) != "0B / 0B" {
			t.Errorf("stats NetIO of a host-network container: %s", r)
		}
	})
	t.Run("events of top, export and cp", func(t *testing.T) {
		// dockerd logs them as container events; they were missing.
		if r := docker("run", "-d", "--name", "evcalls", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "evcalls")
		since := strconv.FormatInt(time.Now().Unix()-1, 10)
		docker("top", "evcalls")
		docker("export", "-o", filepath.Join(t.TempDir(), "x.tar"), "evcalls")
		docker("cp", "evcalls:/etc/hostname", t.TempDir())
		src := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		docker("cp", src, "evcalls:/tmp/")
		time.Sleep(1100 * time.Millisecond)
		r := docker("events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix(), 10), "--filter", "container=evcalls", "--format", "{{.Action}}")
		var got []string
		for _, a := range strings.Fields(r.Stdout) {
			if a == "top" || a == "export" || a == "archive-path" || a == "extract-to-dir" {
				got = append(got, a)
			}
		}
		if strings.Join(got, " ") != "top export archive-path extract-to-dir" {
			t.Errorf("events: %s, want top export archive-path extract-to-dir among them", r)
		}
	})
	t.Run("created of the built-in networks", func(t *testing.T) {
		// The daemon's start, as dockerd's bridge; it was the epoch.
		r := docker("network", "ls", "--filter", "type=builtin", "--format", "{{.Name}} {{.CreatedAt}}")
		if r.Code != 0 || strings.Count(r.Stdout, "\n") != 3 || strings.Contains(r.Stdout, "1970-01-01") {
			t.Errorf("network ls CreatedAt: %s", r)
		}
		if r := docker("network", "rm", "bridge"); r.Code == 0 || !strings.Contains(r.Stderr, "bridge is a pre-defined network and cannot be removed") {
			t.Errorf("network rm bridge: %s", r)
		}
	})
	t.Run("ExecIDs", func(t *testing.T) {
		// The execs that have not ended, as dockerd's inspect; it was null.
		if r := docker("run", "-d", "--name", "execids", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "execids")
		if r := docker("exec", "-d", "execids", "sleep", "100"); r.Code != 0 {
			t.Fatalf("exec -d: %s", r)
		}
		docker("exec", "execids", "true") // ended: not listed
		if r := docker("inspect", "-f", "{{len .ExecIDs}}", "execids"); strings.TrimSpace(r.Stdout) != "1" {
			t.Errorf("ExecIDs with one exec running: %s", r)
		}
	})
	t.Run("inspect Config with the image's", func(t *testing.T) {
		// dockerd merges the image's config into the container's at
		// create: inspect showed only what the client sent.
		if r := docker("run", "--name", "cfgsrc", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run: %s", r)
		}
		defer d.Run("rm", "-f", "cfgsrc")
		if r := docker("commit", "-c", "ENV X=1 Y=image", "-c", "WORKDIR /w", "-c", "USER nobody", "-c", `CMD ["sleep", "100"]`, "-c", "VOLUME /vv", "-c", "STOPSIGNAL SIGUSR1", "cfgsrc", "cfgimg"); r.Code != 0 {
			t.Fatalf("commit: %s", r)
		}
		defer d.Run("rmi", "cfgimg")
		if r := docker("create", "--name", "cfgc", "-e", "Y=2", "cfgimg"); r.Code != 0 {
			t.Fatalf("create: %s", r)
		}
		defer d.Run("rm", "-f", "-v", "cfgc")
		want := `["Y=2","X=1"] /w nobody ["sleep","100"] {"/vv":{}} SIGUSR1`
		if r := docker("inspect", "-f", "{{json .Config.Env}} {{.Config.WorkingDir}} {{.Config.User}} {{json .Config.Cmd}} {{json .Config.Volumes}} {{.Config.StopSignal}}", "cfgc"); strings.TrimSpace(r.Stdout) != want {
			t.Errorf("inspect Config: %s, want %s", r, want)
		}
	})
}

// TestCompatServicePs drives service ls and service ps of a one-manager
// swarm with the docker CLI: a task no node can take shows its reason in the
// ERROR column (Swarm's Status.Err), and a running service shows 1/1.
func TestCompatServicePs(t *testing.T) {
	c := newSwarm(t, 1, 0)
	h := c.Hosts[0]
	docker := dockerCLI(t, h.Daemon)
	if r := docker("service", "create", "-d", "--name", "nowhere", "--constraint", "node.labels.zone==mars", "busybox", "sleep", "1000"); r.Code != 0 {
		t.Fatalf("docker service create: %s", r)
	}
	if r := docker("service", "create", "-d", "--name", "here", "busybox", "sleep", "1000"); r.Code != 0 {
		t.Fatalf("docker service create: %s", r)
	}
	var last harness.Result
	waitFor(t, "the pending task's error in docker service ps", func() bool {
		last = docker("service", "ps", "--no-trunc", "--format", "{{.CurrentState}}|{{.Error}}", "nowhere")
		return strings.HasPrefix(last.Stdout, "Pending") && strings.Contains(last.Stdout, `|"no suitable node (scheduling constraints not satisfied on 1 node)"`)
	})
	waitFor(t, "docker service ls to show here 1/1", func() bool {
		last = docker("service", "ls", "--format", "{{.Name}} {{.Replicas}}")
		return strings.Contains(last.Stdout, "here 1/1") && strings.Contains(last.Stdout, "nowhere 0/1")
	})
	r := docker("service", "ps", "here")
	if r.Code != 0 || !strings.Contains(r.Stdout, "here.1") || !strings.Contains(r.Stdout, "Running") {
		t.Fatalf("docker service ps here: %s", r)
	}
	// service inspect asks for the defaults (insertDefaults): what the
	// service runs with where its spec is silent, as dockerd shows them.
	r = docker("service", "inspect", "--format", "{{.Spec.UpdateConfig.Parallelism}} {{.Spec.UpdateConfig.Monitor}} {{.Spec.RollbackConfig.Order}} {{.Spec.TaskTemplate.RestartPolicy.Delay}} {{.Spec.TaskTemplate.ContainerSpec.StopGracePeriod}}", "here")
	if got := strings.TrimSpace(r.Stdout); got != "1 5s stop-first 5s 10s" {
		t.Errorf("docker service inspect's defaults: %s", r)
	}
	if r := docker("service", "inspect", "--pretty", "here"); !strings.Contains(r.Stdout, "Monitoring Period: 5s") {
		t.Errorf("docker service inspect --pretty: %s", r)
	}
}

// TestCompatDockerPyServiceUpdate: docker-py's service update tests read
// the service's version after an update that changes nothing (its
// fetch_current_spec fills in the rest of the spec; the second of two such
// updates is the same spec exactly): swarmkit writes such
// an update with a new version, and shoal kept the old one (test
// update_service_with_defaults_container_labels: assert 136 > 136). No
// task is replaced by it. The task list's service and node filters take
// names too.
func TestCompatDockerPyServiceUpdate(t *testing.T) {
	c := newSwarm(t, 1, 0)
	got := dockerPy(t, c.Hosts[0].Daemon, `a = c.api
sid = a.create_service(docker.types.TaskTemplate(docker.types.ContainerSpec('busybox', ['sleep', '1000'], labels={'l': 'v'})), name='pynoop')['ID']
def running():
    return sorted(t['ID'] for t in a.tasks(filters={'service': sid}) if t['Status']['State'] == 'running')
for _ in range(200):
    if running():
        break
    time.sleep(0.1)
before = running()
bumped = []
for _ in range(2):
    v = a.inspect_service(sid)['Version']['Index']
    a.update_service(sid, v, task_template=docker.types.TaskTemplate(docker.types.ContainerSpec('busybox', ['sleep', '1000'])), name='pynoop', fetch_current_spec=True)
    bumped.append(a.inspect_service(sid)['Version']['Index'] > v)
after = a.inspect_service(sid)
time.sleep(2)
print(len(before), bumped, after['Spec']['TaskTemplate']['ContainerSpec']['Labels'], running() == before)
byname = sorted(t['ID'] for t in a.tasks(filters={'service': 'pynoop'}))
node = a.nodes()[0]['Description']['Hostname']
print(byname == sorted(t['ID'] for t in a.tasks(filters={'service': sid})) and len(byname) > 0,
      len(a.tasks(filters={'service': 'pynoop', 'node': node})) == len(byname))
try:
    a.tasks(filters={'service': 'nosuch'})
except docker.errors.NotFound:
    print('NotFound')
a.remove_service(sid)`)
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || lines[0] != "1 [True, True] {'l': 'v'} True" {
		t.Fatalf("docker-py update_service twice with nothing changed: %s, want: 1 [True, True] {'l': 'v'} True (one task; a new version each time; the labels kept; the same task running)", got)
	}
	// The tasks' service and node filters take names, as dockerd's (by
	// name docker-py listed no task).
	if lines[1] != "True True" || lines[2] != "NotFound" {
		t.Fatalf("docker-py tasks(filters={'service': NAME, 'node': HOSTNAME}), then an unknown service: %s", got)
	}
}

// TestCompatDockerPySwarmInit: dockerd's swarm init returns once the node
// is ready (its agent's first session open), so docker-py's
// test_inspect_node and test_update_node read the node at the version it
// keeps: shoal returned before, with the node unknown, and its version
// moved under them (10 times in 15). A rotation of the unlock key with
// autolock off in the update's spec is no error.
func TestCompatDockerPySwarmInit(t *testing.T) {
	d := engine(t)
	port := 10000 + os.Getpid()%15000
	got := dockerPy(t, d, fmt.Sprintf(`a = c.api
out = []
for i in range(5):
    a.init_swarm('127.0.0.1', listen_addr='127.0.0.1:%%d' %% (%d + i))
    n = a.nodes()[0]
    same = a.inspect_node(n['ID'])['Version'] == n['Version']
    spec = dict(n['Spec'], Labels={'k': 'v'})
    a.update_node(n['ID'], n['Version']['Index'], spec)
    out.append((n['Status']['State'], same))
    a.leave_swarm(force=True)
print(out)
# docker-py's test_rotate_manager_unlock_key: the update carries an empty
# spec, which turns autolock off; dockerd rotates without an error (the
# daemon refused: "autolock is not turned on").
a.init_swarm('127.0.0.1', listen_addr='127.0.0.1:%%d' %% (%d + 5), swarm_spec=a.create_swarm_spec(autolock_managers=True))
k1 = a.get_unlock_key()['UnlockKey']
a.update_swarm(version=a.inspect_swarm()['Version']['Index'], rotate_manager_unlock_key=True)
print(k1 != '', a.get_unlock_key()['UnlockKey'] != k1)
a.leave_swarm(force=True)`, port, port))
	lines := strings.Split(got, "\n")
	if want := strings.Repeat("('ready', True), ", 4) + "('ready', True)"; len(lines) != 2 || lines[0] != "["+want+"]" {
		t.Fatalf("docker-py: the node right after swarm init, five times: %s", got)
	}
	if lines[1] != "True True" {
		t.Fatalf("docker-py: update_swarm(rotate_manager_unlock_key=True) of an autolocked swarm: %s", got)
	}
}
