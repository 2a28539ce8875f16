package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

func newClient(t testing.TB, d *testDaemon) *client.Client {
	t.Helper()
	c, err := client.New(client.WithHost(d.cfg.Host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func importBusybox(t testing.TB, c *client.Client, ref string) string {
	t.Helper()
	ctx := context.Background()
	rc, err := c.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(busyboxTar(t)), SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: []string{`CMD ["sh"]`, "ENV GREETING=hi", "EXPOSE 80"}, Message: "test image"})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Contains(b, []byte(`"status":"sha256:`)) {
		t.Fatalf("import stream %s", b)
	}
	res, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// TestClientRoundTrip drives the daemon with the client the CLI uses:
// negotiation, version, and the image endpoints.
func TestClientRoundTrip(t *testing.T) {
	d := startDaemon(t)
	c := newClient(t, d)
	ctx := context.Background()

	ping, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	if ping.APIVersion != APIVersion || ping.OSType != "linux" || c.ClientVersion() != APIVersion {
		t.Fatalf("ping %+v, client version %s", ping, c.ClientVersion())
	}
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil || v.APIVersion != APIVersion || v.MinAPIVersion != MinAPIVersion {
		t.Fatalf("version %+v %v", v, err)
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil || info.Info.Name != "test-node" || info.Info.MemTotal == 0 || info.Info.CgroupVersion == "" {
		t.Fatalf("info %+v %v", info, err)
	}
	// The default runtime is among the runtimes listed, as dockerd's is.
	if rt, ok := info.Info.Runtimes[info.Info.DefaultRuntime]; !ok || rt.Path == "" {
		t.Errorf("runtimes %+v, default %q", info.Info.Runtimes, info.Info.DefaultRuntime)
	}
	// Containers outlive the daemon (TestDaemonRestartKeepsContainers), so
	// it says so as dockerd with --live-restore does.
	if !info.Info.LiveRestoreEnabled {
		t.Error("info: LiveRestoreEnabled false, but containers survive a daemon restart")
	}
	// An old client (docker 20.10 speaks 1.41) is served too.
	old, err := client.New(client.WithHost(d.cfg.Host), client.WithAPIVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := old.ImageList(ctx, client.ImageListOptions{}); err != nil {
		t.Fatalf("1.41 client: %v", err)
	}

	id := importBusybox(t, c, "bb:1")
	list, err := c.ImageList(ctx, client.ImageListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].ID != id || list.Items[0].RepoTags[0] != "bb:1" {
		t.Fatalf("image list %+v %v", list, err)
	}
	img, err := c.ImageInspect(ctx, "bb:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || strings.Join(img.Config.Cmd, " ") != "sh" || img.Config.Env[len(img.Config.Env)-1] != "GREETING=hi" || img.Os != "linux" {
		t.Errorf("inspect config %+v", img.Config)
	}
	if _, ok := img.Config.ExposedPorts["80/tcp"]; !ok {
		t.Errorf("exposed ports %v", img.Config.ExposedPorts)
	}
	if _, err := c.ImageTag(ctx, client.ImageTagOptions{Source: "bb:1", Target: "localhost:5000/team/bb:2"}); err != nil {
		t.Fatal(err)
	}
	// Names with slashes and a registry port reach the right route.
	if _, err := c.ImageInspect(ctx, "localhost:5000/team/bb:2"); err != nil {
		t.Fatalf("inspect by a name with slashes: %v", err)
	}
	hist, err := c.ImageHistory(ctx, "localhost:5000/team/bb:2")
	if err != nil || len(hist.Items) == 0 || hist.Items[0].Comment != "test image" {
		t.Fatalf("history %+v %v", hist, err)
	}
	f := make(client.Filters).Add("reference", "localhost:5000/team/*")
	if l, err := c.ImageList(ctx, client.ImageListOptions{Filters: f}); err != nil || len(l.Items) != 1 {
		t.Fatalf("filtered list %+v %v", l, err)
	}
	if _, err := c.ImageInspect(ctx, "nosuch:image"); !isStatus(err, 404) {
		t.Errorf("missing image: %v", err)
	}

	// Save, remove, load: the same image comes back.
	rc, err := c.ImageSave(ctx, []string{"bb:1"})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || len(saved) < 1024 {
		t.Fatalf("save: %d bytes, %v", len(saved), err)
	}
	rm, err := c.ImageRemove(ctx, "localhost:5000/team/bb:2", client.ImageRemoveOptions{})
	if err != nil || len(rm.Items) != 1 || rm.Items[0].Untagged == "" {
		t.Fatalf("untag: %+v %v", rm, err)
	}
	rm, err = c.ImageRemove(ctx, "bb:1", client.ImageRemoveOptions{})
	if err != nil || len(rm.Items) < 2 {
		t.Fatalf("remove: %+v %v", rm, err)
	}
	lr, err := c.ImageLoad(ctx, bytes.NewReader(saved))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(lr)
	lr.Close()
	if !bytes.Contains(out, []byte("Loaded image: bb:1")) {
		t.Fatalf("load stream %s", out)
	}
	if got, err := c.ImageInspect(ctx, "bb:1"); err != nil || got.ID != id {
		t.Fatalf("after load %s %v, want %s", got.ID, err, id)
	}
	// A pull goes to the registry the name says; one that does not answer
	// fails the pull, in the progress stream as dockerd reports it.
	if rc, err := c.ImagePull(ctx, "127.0.0.1:1/x:1", client.ImagePullOptions{}); err != nil {
		t.Errorf("pull from a registry that is not there: %v, want the failure in the stream", err)
	} else {
		if err := rc.Wait(ctx); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("pull from a registry that is not there: %v, want an error naming it", err)
		}
		rc.Close()
	}
	// An untagged import is dangling: prune takes it and nothing else.
	rc, err = c.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(busyboxTar(t)), SourceName: "-"}, "",
		client.ImageImportOptions{Changes: []string{"LABEL dangling=yes"}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	var pr struct{ ImagesDeleted []struct{ Deleted string } }
	if err := json.Unmarshal(d.call("POST", `/images/prune?filters={"dangling":{"true":true}}`, "", 200), &pr); err != nil || len(pr.ImagesDeleted) != 1 {
		t.Errorf("prune: %+v %v", pr, err)
	}
	if l, err := c.ImageList(ctx, client.ImageListOptions{}); err != nil || len(l.Items) != 1 {
		t.Errorf("after prune %+v %v", l, err)
	}
	// prune -a (dangling=false) takes every image no container uses.
	d.call("POST", `/images/prune?filters={"dangling":{"false":true}}`, "", 200)
	if l, err := c.ImageList(ctx, client.ImageListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("after prune -a %+v %v", l, err)
	}
}

// isStatus reports whether err is the client's error for that status.
func isStatus(err error, status int) bool {
	switch status {
	case http.StatusNotFound:
		return cerrdefs.IsNotFound(err)
	case http.StatusConflict:
		return cerrdefs.IsConflict(err)
	case http.StatusBadRequest:
		return cerrdefs.IsInvalidArgument(err)
	case http.StatusInternalServerError:
		return cerrdefs.IsInternal(err) || cerrdefs.IsUnknown(err)
	}
	return false
}

// runOutput creates, attaches, starts and waits for a container as
// `docker run` does, and returns its exit code and output.
func runOutput(t testing.TB, c *client.Client, cfg *container.Config, hc *container.HostConfig) (int64, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cr, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	att, err := c.ContainerAttach(ctx, cr.ID, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer att.Close()
	wait := c.ContainerWait(ctx, cr.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := c.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("attach stream: %v", err)
	}
	select {
	case res := <-wait.Result:
		return res.StatusCode, stdout.String(), stderr.String()
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	return 0, "", ""
}

func TestClientRun(t *testing.T) {
	d := startDaemon(t)
	c := newClient(t, d)
	ctx := context.Background()
	importBusybox(t, c, "bb:1")

	code, out, errOut := runOutput(t, c, &container.Config{Image: "bb:1", Cmd: []string{"sh", "-c", "echo $GREETING out; echo err >&2; exit 3"}}, nil)
	if code != 3 || out != "hi out\n" || errOut != "err\n" {
		t.Errorf("run: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Published ports and the container's address, seen from inside.
	hc := &container.HostConfig{PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "0"}}}}
	_, out, _ = runOutput(t, c, &container.Config{Image: "bb:1", Cmd: []string{"cat", "/proc/net/dev"}}, hc)
	if !strings.Contains(out, "eth0") {
		t.Errorf("bridge container has no eth0: %s", out)
	}
	_, out, _ = runOutput(t, c, &container.Config{Image: "bb:1", Cmd: []string{"cat", "/proc/net/dev"}}, &container.HostConfig{NetworkMode: "none"})
	if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
		t.Errorf("none container: %s", out)
	}

	// -P publishes the image's EXPOSE 80 on a free port; -v binds a host dir.
	host := t.TempDir()
	os.WriteFile(host+"/from-host", []byte("bound\n"), 0o644)
	cr, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "published",
		Config:     &container.Config{Image: "bb:1", Cmd: []string{"sleep", "300"}},
		HostConfig: &container.HostConfig{PublishAllPorts: true, Binds: []string{host + ":/mnt:ro"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	pub, err := c.ContainerInspect(ctx, "published", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b := pub.Container.NetworkSettings.Ports[network.MustParsePort("80/tcp")]; len(b) != 1 || b[0].HostPort == "" || b[0].HostPort == "0" {
		t.Errorf("-P: %v", pub.Container.NetworkSettings.Ports)
	}
	if m := pub.Container.Mounts; len(m) != 1 || m[0].Source != host || m[0].Destination != "/mnt" || m[0].RW {
		t.Errorf("mounts %+v", m)
	}
	if _, err := c.ContainerRemove(ctx, "published", client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}

	// Exec, with stdin, and its exit code.
	cr, err = c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "sleeper", Config: &container.Config{Image: "bb:1", Cmd: []string{"sleep", "300"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	ex, err := c.ExecCreate(ctx, "sleeper", client.ExecCreateOptions{Cmd: []string{"sh", "-c", "wc -c; exit 5"}, AttachStdin: true, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	hj, err := c.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hj.Conn.Write([]byte("12345"))
	hj.CloseWrite()
	var eout bytes.Buffer
	stdcopy.StdCopy(&eout, &eout, hj.Reader)
	hj.Close()
	if strings.TrimSpace(eout.String()) != "5" {
		t.Errorf("exec output %q", eout.String())
	}
	ei, err := c.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil || ei.ExitCode != 5 || ei.Running {
		t.Errorf("exec inspect %+v %v", ei, err)
	}
	// A start returns once the container's process is released, before its
	// execve (as runc's start returns once its init read the exec fifo): on
	// a loaded machine top can see it a moment longer as the shim's clone.
	var top client.ContainerTopResult
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		top, err = c.ContainerTop(ctx, "sleeper", client.ContainerTopOptions{})
		if err == nil && len(top.Processes) > 0 && strings.Contains(strings.Join(top.Processes[0], " "), "sleep 300") {
			break
		}
		if time.Now().After(end) {
			t.Errorf("top %+v %v", top, err)
			break
		}
	}
	// cp out and in.
	cp, err := c.CopyFromContainer(ctx, "sleeper", client.CopyFromContainerOptions{SourcePath: "/data/hello.txt"})
	if err != nil {
		t.Fatal(err)
	}
	tarball, _ := io.ReadAll(cp.Content)
	cp.Content.Close()
	if cp.Stat.Name != "hello.txt" || cp.Stat.Size != 6 || !bytes.Contains(tarball, []byte("hello\n")) {
		t.Errorf("copy from: %+v", cp.Stat)
	}
	if _, err := c.CopyToContainer(ctx, "sleeper", client.CopyToContainerOptions{DestinationPath: "/tmp", Content: bytes.NewReader(tarball)}); err != nil {
		t.Fatal(err)
	}
	st, err := c.ContainerStatPath(ctx, "sleeper", client.ContainerStatPathOptions{Path: "/tmp/hello.txt"})
	if err != nil || st.Stat.Size != 6 {
		t.Errorf("stat after copy: %+v %v", st, err)
	}
	if _, err := c.ContainerStatPath(ctx, "sleeper", client.ContainerStatPathOptions{Path: "/nope"}); !isStatus(err, 404) {
		t.Errorf("stat of a missing path: %v", err)
	}
	exp, err := c.ContainerExport(ctx, "sleeper", client.ContainerExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(exp)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
	exp.Close()
	if !names["data/hello.txt"] || !names["tmp/hello.txt"] || !names["bin/busybox"] {
		t.Errorf("export has %d entries, not the container's files", len(names))
	}
	cm, err := c.ContainerCommit(ctx, "sleeper", client.ContainerCommitOptions{Reference: "bb:committed", Comment: "with hello"})
	if err != nil {
		t.Fatal(err)
	}
	if img, err := c.ImageInspect(ctx, "bb:committed"); err != nil || img.ID != cm.ID {
		t.Errorf("committed image %v %v", img.ID, err)
	}
	list, err := c.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("name", "sleeper")})
	if err != nil || len(list.Items) != 1 || list.Items[0].State != container.StateRunning || list.Items[0].Names[0] != "/sleeper" {
		t.Fatalf("list %+v %v", list, err)
	}
	timeout := 1
	if _, err := c.ContainerStop(ctx, "sleeper", client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	ins, err := c.ContainerInspect(ctx, "sleeper", client.ContainerInspectOptions{})
	if err != nil || ins.Container.State.Running || ins.Container.State.ExitCode != 143 && ins.Container.State.ExitCode != 137 {
		t.Errorf("after stop %+v %v", ins.Container.State, err)
	}
	logs, err := c.ContainerLogs(ctx, "sleeper", client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		t.Fatal(err)
	}
	logs.Close()
	if _, err := c.ContainerRemove(ctx, "sleeper", client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.cfg.ExecRoot + "/netns/" + cr.ID); !os.IsNotExist(err) {
		t.Errorf("netns of a removed container: %v", err)
	}
}

func TestLogs(t *testing.T) {
	d := startDaemon(t)
	c := newClient(t, d)
	ctx := context.Background()
	importBusybox(t, c, "bb:1")
	cr, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "talker", Config: &container.Config{Image: "bb:1",
		Cmd: []string{"sh", "-c", "echo one; echo two >&2; sleep 1; echo three"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	logs := func(o client.ContainerLogsOptions) (string, string) {
		t.Helper()
		rc, err := c.ContainerLogs(ctx, "talker", o)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var out, errOut bytes.Buffer
		if _, err := stdcopy.StdCopy(&out, &errOut, rc); err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String()
	}
	// Follow streams until the container has exited.
	out, errOut := logs(client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if out != "one\nthree\n" || errOut != "two\n" {
		t.Errorf("follow: %q %q", out, errOut)
	}
	if out, errOut = logs(client.ContainerLogsOptions{ShowStdout: true}); out != "one\nthree\n" || errOut != "" {
		t.Errorf("stdout only: %q %q", out, errOut)
	}
	if out, _ = logs(client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "1"}); out != "three\n" {
		t.Errorf("tail 1: %q", out)
	}
	out, _ = logs(client.ContainerLogsOptions{ShowStdout: true, Timestamps: true})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("timestamps: %q", out)
	}
	for _, l := range lines {
		ts, text, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || (text != "one" && text != "three") {
			t.Errorf("timestamped line %q: %v", l, err)
		}
	}
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	if out, _ = logs(client.ContainerLogsOptions{ShowStdout: true, Since: future}); out != "" {
		t.Errorf("since the future: %q", out)
	}
	if _, err := c.ContainerLogs(ctx, "nosuch", client.ContainerLogsOptions{ShowStdout: true}); !isStatus(err, 404) {
		t.Errorf("logs of a missing container: %v", err)
	}
}
