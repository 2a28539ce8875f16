package tests

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// writeContext makes a build context directory of files (name -> content).
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// imageIDs lists every image ID of d (intermediate ones included).
func imageIDs(t *testing.T, d *harness.Daemon) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, id := range strings.Fields(d.Must("images", "-a", "-q", "--no-trunc")) {
		ids[id] = true
	}
	return ids
}

const twoStage = `ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
ENV OUT=/out
WORKDIR /src
COPY app/ ./
RUN mkdir -p $OUT && cat msg.txt > $OUT/msg && echo "$GREETING from the builder" >> $OUT/msg && ls /src > $OUT/listing

FROM busybox
LABEL stage=final
COPY --from=builder /out/ /srv/
COPY top.txt /srv/top.txt
CMD ["cat", "/srv/msg"]
`

// TestBuildTwoStage: a two-stage build with ARG before FROM, ARG and ENV
// expansion, WORKDIR, COPY of a directory, RUN, COPY --from, LABEL and CMD;
// .dockerignore keeps a file out; the image runs; a rebuild takes every
// step from the cache and makes no image; a changed file misses the cache
// from its COPY on; --target builds the first stage only.
func TestBuildTwoStage(t *testing.T) {
	d := engine(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile":     twoStage,
		"app/msg.txt":    "a message\n",
		"app/secret.key": "must not be sent\n",
		"top.txt":        "top\n",
		".dockerignore":  "# keep the key out\napp/*.key\n",
	})
	out := d.Must("build", "-t", "two:stage", "--build-arg", "GREETING=hi", ctxDir)
	for _, want := range []string{"Step 1/11 : FROM ${BASE} AS builder", " ---> Running in ", "Successfully built ", "Successfully tagged two:stage"} {
		if !strings.Contains(out, want) {
			t.Fatalf("build output lacks %q:\n%s", want, out)
		}
	}
	run := d.Must("run", "--rm", "--network", "none", "two:stage")
	if run != "a message\nhi from the builder\n" {
		t.Fatalf("the built image prints %q", run)
	}
	if l := d.Must("run", "--rm", "--network", "none", "two:stage", "cat", "/srv/listing"); strings.Contains(l, "secret.key") || !strings.Contains(l, "msg.txt") {
		t.Fatalf("the context as the build saw it (.dockerignore: app/*.key): %q", l)
	}
	if l := d.Must("image", "inspect", "--format", `{{.Config.Labels.stage}} {{json .Config.Cmd}}`, "two:stage"); strings.TrimSpace(l) != `final ["cat","/srv/msg"]` {
		t.Fatalf("labels and cmd: %q", l)
	}
	// As docker: busybox, two:stage and the builder stage's last image
	// (untagged, a leaf); the steps' images only with -a.
	if l, all := strings.Fields(d.Must("images", "-q")), imageIDs(t, d); len(l) != 3 || len(all) <= 3 {
		t.Fatalf("images lists %d images, -a %d: want 3 and the intermediate ones only with -a", len(l), len(all))
	}
	if h := d.Must("history", "--no-trunc", "two:stage"); !strings.Contains(h, "COPY --from=builder") || !strings.Contains(h, "LABEL") {
		t.Fatalf("history does not show the built steps:\n%s", h)
	}

	before := imageIDs(t, d)
	id := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{.Id}}", "two:stage"))
	again := d.Must("build", "-t", "two:stage", "--build-arg", "GREETING=hi", ctxDir)
	if n := strings.Count(again, "Using cache"); n != 9 {
		t.Fatalf("a rebuild with nothing changed used the cache %d times, want 9 (every step but the FROMs):\n%s", n, again)
	}
	if strings.Contains(again, "Running in") {
		t.Fatalf("a cached rebuild ran a container:\n%s", again)
	}
	if after := imageIDs(t, d); len(after) != len(before) {
		t.Fatalf("a cached rebuild made images: %d before, %d after", len(before), len(after))
	}
	if got := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{.Id}}", "two:stage")); got != id {
		t.Fatalf("a cached rebuild gave %s, want %s", got, id)
	}

	if err := os.WriteFile(filepath.Join(ctxDir, "app", "msg.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := d.Must("build", "-t", "two:stage", "--build-arg", "GREETING=hi", ctxDir)
	if !strings.Contains(changed, "Running in") || strings.Count(changed, "Using cache") != 4 {
		t.Fatalf("after a change in app/ the build should reuse the 4 steps before its COPY:\n%s", changed)
	}
	if run := d.Must("run", "--rm", "--network", "none", "two:stage"); !strings.HasPrefix(run, "changed\n") {
		t.Fatalf("the rebuilt image prints %q", run)
	}

	tgt := d.Must("build", "-t", "two:builder", "--target", "builder", ctxDir)
	if strings.Contains(tgt, "LABEL stage=final") || !strings.Contains(tgt, "Step 6/6") {
		t.Fatalf("--target builder built more than its stage:\n%s", tgt)
	}
}

// TestBuildFailures: a failing RUN shows its output and exit code, exits
// non-zero, and leaves no image and no container; COPY of a missing file,
// an unknown instruction and a missing Dockerfile fail in one line.
func TestBuildFailures(t *testing.T) {
	d := engine(t)
	before := imageIDs(t, d)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo about to fail && exit 3\n",
	})
	r := d.Run("build", "-t", "bad:run", ctxDir)
	if r.Code == 0 || !strings.Contains(r.Stdout, "about to fail") || !strings.Contains(r.Stderr, "returned a non-zero code: 3") {
		t.Fatalf("failing RUN: %s", r)
	}
	if ps := strings.TrimSpace(d.Must("ps", "-a", "-q")); ps != "" {
		t.Fatalf("a failed build left containers: %q", ps)
	}
	if after := imageIDs(t, d); len(after) != len(before) {
		t.Fatalf("a failed build left images: %v, before %v", after, before)
	}
	if r := d.Run("image", "inspect", "bad:run"); r.Code == 0 {
		t.Fatal("a failed build tagged its image")
	}
	for _, tc := range []struct{ dockerfile, want string }{
		{"FROM busybox\nCOPY missing.txt /x\n", "missing.txt"},
		{"FROM busybox\nFROBNICATE now\n", "unknown instruction"},
		{"FROM busybox\nCOPY ../../etc/passwd /x\n", "file not found"},
	} {
		dir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile})
		r := d.Run("build", dir)
		if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), strings.ToLower(tc.want)) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("build of %q: want one line saying %q: %s", tc.dockerfile, tc.want, r)
		}
	}
	// Hostile contexts: a name that climbs out, a link then a file through
	// it, an unsupported option. Each refused, nothing written outside.
	for name, entries := range map[string][]tar.Header{
		"dotdot":  {{Name: "../../escape-dotdot", Typeflag: tar.TypeReg, Mode: 0o644}},
		"symlink": {{Name: "ln", Typeflag: tar.TypeSymlink, Linkname: "/", Mode: 0o777}, {Name: "ln/tmp/escape-symlink", Typeflag: tar.TypeReg, Mode: 0o644}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			tw.WriteHeader(&h)
		}
		tw.Close()
		code, body := apiDo(t, d.Socket, "POST", "/build?t=hostile:"+name, buf.String())
		if code == 200 && !strings.Contains(body, "error") {
			t.Errorf("hostile context %s accepted: %d %s", name, code, body)
		}
		for _, p := range []string{filepath.Join(d.Root, "escape-dotdot"), "/tmp/escape-symlink", filepath.Join(d.Root, "tmp", "escape-dotdot")} {
			if _, err := os.Lstat(p); err == nil {
				os.Remove(p)
				t.Errorf("hostile context %s wrote %s", name, p)
			}
		}
	}
	if code, body := apiDo(t, d.Socket, "POST", "/build?memory=1000000", ""); code != 400 || !strings.Contains(body, "memory") {
		t.Errorf("an unsupported build option was not refused: %d %s", code, body)
	}
	// --network: RUN on the default bridge has an eth0, with none it has not.
	netDir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN ls /sys/class/net\n"})
	if out := d.Must("build", "--no-cache", netDir); !strings.Contains(out, "eth0") {
		t.Errorf("RUN on the default network has no eth0:\n%s", out)
	}
	if out := d.Must("build", "--no-cache", "--network", "none", netDir); strings.Contains(out, "eth0") {
		t.Errorf("RUN with --network none has an eth0:\n%s", out)
	}
	if r := d.Run("build", "--network", "host", netDir); r.Code == 0 || !strings.Contains(r.Stderr, "not supported") {
		t.Errorf("build --network host: %s", r)
	}
	if r := d.Run("build", "-f", "nope", writeContext(t, map[string]string{"x": ""})); r.Code == 0 {
		t.Errorf("build without a Dockerfile succeeded: %s", r)
	}
	if ps := strings.TrimSpace(d.Must("ps", "-a", "-q")); ps != "" {
		t.Fatalf("failed builds left containers: %q", ps)
	}
}

// TestBuildClients: the docker CLI's classic builder (DOCKER_BUILDKIT=0)
// and docker-py's images.build build against the daemon.
func TestBuildClients(t *testing.T) {
	d := engine(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nARG WHO=docker\nRUN echo built by $WHO > /who\nCMD cat /who\n",
	})
	t.Setenv("DOCKER_BUILDKIT", "0")
	r := dockerCLI(t, d)("build", "-t", "by:docker", "--build-arg", "WHO=cli", ctxDir)
	if r.Code != 0 || !regexp.MustCompile(`Successfully built [0-9a-f]{12}`).MatchString(r.Stdout) {
		t.Fatalf("docker build: %s", r)
	}
	if out := d.Must("run", "--rm", "--network", "none", "by:docker"); out != "built by cli\n" {
		t.Fatalf("docker-built image prints %q", out)
	}
	py := dockerPy(t, d, "img, logs = c.images.build(path='"+ctxDir+"', tag='by:py', buildargs={'WHO': 'py'})\nprint(img.id)\nprint(img.tags)")
	if !strings.Contains(py, "sha256:") || !strings.Contains(py, "by:py") {
		t.Fatalf("docker-py build: %s", py)
	}
	if out := d.Must("run", "--rm", "--network", "none", "by:py"); out != "built by py\n" {
		t.Fatalf("docker-py-built image prints %q", out)
	}
}

// TestBuildInstructions: what the config-only instructions leave in the
// image (USER, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ENTRYPOINT
// resetting an inherited CMD), ADD of a local archive unpacked, COPY
// --chown and --chmod, and ONBUILD triggers run when a child builds FROM
// the image, and not inherited further.
func TestBuildInstructions(t *testing.T) {
	d := engine(t)
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "inside/x.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("abc"))
	tw.Close()
	base := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nCMD [\"inherited\"]\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nUSER 1000:1000\nEXPOSE 8080 53/udp\nVOLUME /data\n" +
			"STOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-ec\"]\nHEALTHCHECK --interval=5s --retries=2 CMD true\n" +
			"ADD files.tar /unpacked/\nCOPY --chown=12:34 --chmod=640 owned.txt /owned.txt\nONBUILD COPY child.txt /from-trigger.txt\n",
		"files.tar": tarball.String(),
		"owned.txt": "mine\n",
	})
	d.Must("build", "-t", "with:triggers", base)
	got := strings.TrimSpace(d.Must("image", "inspect", "--format",
		`{{json .Config.Cmd}}|{{json .Config.Entrypoint}}|{{.Config.User}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{json .Config.Shell}}|{{json .Config.Healthcheck.Test}}|{{.Config.Healthcheck.Retries}}|{{json .Config.OnBuild}}`, "with:triggers"))
	// CMD set in the same stage stays under a later ENTRYPOINT (as Docker);
	// the shell form of HEALTHCHECK is CMD-SHELL.
	want := `["inherited"]|["/bin/sh","-c"]|1000:1000|{"53/udp":{},"8080/tcp":{}}|{"/data":{}}|SIGINT|["/bin/sh","-ec"]|["CMD-SHELL","true"]|2|["COPY child.txt /from-trigger.txt"]`
	if got != want {
		t.Fatalf("image config:\n got %s\nwant %s", got, want)
	}
	// The test's busybox is an imported rootfs without ENV: the built image
	// has dockerd's default PATH.
	if env := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{json .Config.Env}}", "with:triggers")); env != `["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]` {
		t.Fatalf("built image's Env: %s", env)
	}
	if out := d.Must("run", "--rm", "--network", "none", "-u", "0", "with:triggers", "cat /unpacked/inside/x.txt; stat -c '%u:%g %a' /owned.txt"); out != "abc12:34 640\n" {
		t.Fatalf("ADD of an archive and COPY --chown/--chmod: %q", out)
	}
	child := writeContext(t, map[string]string{
		"Dockerfile": "FROM with:triggers\nUSER 0\nRUN cat /from-trigger.txt\nENTRYPOINT [\"/bin/cat\"]\n",
		"child.txt":  "the trigger ran\n",
	})
	out := d.Must("build", "-t", "child:1", child)
	if !strings.Contains(out, "# Executing 1 build trigger") || !strings.Contains(out, "the trigger ran") {
		t.Fatalf("the ONBUILD trigger did not run:\n%s", out)
	}
	if ob := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{json .Config.OnBuild}}", "child:1")); ob != "null" && ob != "[]" {
		t.Fatalf("the child inherited the triggers: %s", ob)
	}
	// An ENTRYPOINT resets a CMD inherited from the base image.
	if cmd := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{json .Config.Cmd}}", "child:1")); cmd != "null" && cmd != "[]" {
		t.Fatalf("the child's ENTRYPOINT kept the inherited CMD: %s", cmd)
	}
}
