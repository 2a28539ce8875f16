package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterServiceImage: services run an image by name on nodes that
// never had it. busybox is imported on the manager only and copied with
// skopeo into the cluster registry as MANAGER:5000/bb:1; `service create`
// pins that name to the registry's digest (service inspect shows
// name:tag@digest) and both tasks, constrained to the two workers, run
// after the workers pulled the image from the cluster registry with their
// node certificates. The short name bb:1, which the cluster registry has,
// resolves there too. A service of an image no registry has is created
// with a warning and its tasks fail with "No such image" and the reason;
// --no-resolve-image keeps the name as given, and its task pulls by tag.
func TestClusterServiceImage(t *testing.T) {
	needSkopeo(t)
	c := &swarmCluster{Cluster: harness.NewCluster(t, 3)}
	mgr := c.Hosts[0]
	must(t, mgr, "import", harness.BusyboxTar(t), "bb:1")
	must(t, mgr, "swarm", "init", "--advertise-addr", mgr.IP)
	c.managers = []*harness.Host{mgr}
	token := strings.TrimSpace(must(t, mgr, "swarm", "join-token", "-q", "worker"))
	for _, h := range c.Hosts[1:] {
		c.join(t, h, token, "worker")
		c.workers = append(c.workers, h)
	}
	c.waitReady(t, mgr)
	for _, w := range c.workers {
		if r := w.Daemon.Run("image", "inspect", "bb:1"); r.Code == 0 {
			t.Fatalf("worker %s has bb:1 before the test", w.Name)
		}
	}

	// Into the cluster registry with the user token, as a user would.
	regToken := strings.TrimSpace(must(t, mgr, "swarm", "registry-token"))
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	writeFiles(t, certs, map[string][]byte{"ca.crt": []byte(must(t, mgr, "swarm", "ca"))})
	archive := filepath.Join(dir, "bb.tar")
	must(t, mgr, "save", "-o", archive, "bb:1")
	regHost := mgr.IP + ":5000"
	waitFor(t, "the manager's registry", func() bool {
		conn, err := mgr.DialTimeout("tcp", regHost, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	skopeo := func(args ...string) string {
		t.Helper()
		r := mgr.Exec(append([]string{"skopeo", "--command-timeout", "50s"}, args...)...)
		if r.Code != 0 {
			t.Fatalf("skopeo %s: %s", strings.Join(args, " "), r)
		}
		return strings.TrimSpace(r.Stdout)
	}
	creds := "anyone:" + regToken
	skopeo("copy", "--dest-creds", creds, "--dest-cert-dir", certs, "docker-archive:"+archive, "docker://"+regHost+"/bb:1")
	dgst := skopeo("inspect", "--creds", creds, "--cert-dir", certs, "--format", "{{.Digest}}", "docker://"+regHost+"/bb:1")
	if !strings.HasPrefix(dgst, "sha256:") {
		t.Fatalf("skopeo inspect digest: %q", dgst)
	}

	image := regHost + "/bb:1"
	must(t, mgr, "service", "create", "-d", "--name", "bb", "--replicas", "2", "--replicas-max-per-node", "1",
		"--constraint", "node.role==worker", image, "sleep", "600")
	inspectImage := func(svc string) string {
		return strings.TrimSpace(must(t, mgr, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", svc))
	}
	if got, want := inspectImage("bb"), image+"@"+dgst; got != want {
		t.Fatalf("service image %q, want the pinned %q", got, want)
	}
	p := c.waitPlacement(t, mgr, "bb", 60*time.Second, "both tasks running on the workers", func(p placement) bool {
		return p.total == 2 && p.perNode[c.workers[0].Name] == 1 && p.perNode[c.workers[1].Name] == 1
	})
	t.Logf("bb: %v", p)
	for _, w := range c.workers {
		if out := must(t, w, "image", "ls", "--digests", "--format", "{{.Digest}}"); !strings.Contains(out, dgst) {
			t.Fatalf("worker %s has no image of digest %s:\n%s", w.Name, dgst, out)
		}
	}

	// A name without a registry host that the cluster registry has.
	must(t, mgr, "service", "create", "-d", "--name", "short", "--constraint", "node.role==worker", "bb:1", "sleep", "600")
	if got, want := inspectImage("short"), "bb:1@"+dgst; got != want {
		t.Fatalf("service image %q, want the pinned %q", got, want)
	}
	c.waitPlacement(t, mgr, "short", 60*time.Second, "its task running", func(p placement) bool { return p.total == 1 })

	// --no-resolve-image: stored as given; the task pulls the tag.
	must(t, mgr, "service", "create", "-d", "--name", "asis", "--no-resolve-image", "--constraint", "node.role==worker", image, "sleep", "600")
	if got := inspectImage("asis"); got != image {
		t.Fatalf("--no-resolve-image stored %q, want %q", got, image)
	}
	c.waitPlacement(t, mgr, "asis", 60*time.Second, "its task running", func(p placement) bool { return p.total == 1 })

	// An image no registry has: a warning, then tasks failing with the reason.
	missing := regHost + "/nope:1"
	r := mgr.Daemon.Run("service", "create", "-d", "--name", "nope", "--constraint", "node.role==worker", missing, "true")
	if r.Code != 0 || !strings.Contains(r.Stderr, "could not be accessed on a registry") || !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("service create of a missing image: %s", r)
	}
	if got := inspectImage("nope"); got != missing {
		t.Fatalf("unresolved image stored as %q, want %q", got, missing)
	}
	var errs string
	waitFor(t, "nope's tasks failing with the reason", func() bool {
		r := mgr.Daemon.Run("service", "ps", "--no-trunc", "--format", "{{.CurrentState}}|{{.Error}}", "nope")
		errs = r.Stdout
		return r.Code == 0 && strings.Contains(r.Stdout, "No such image: "+missing) && strings.Contains(r.Stdout, "not found")
	})
	t.Logf("nope: %s", errs)
	waitFor(t, "nope's task retried", func() bool {
		r := mgr.Daemon.Run("service", "ps", "-q", "nope")
		return r.Code == 0 && len(strings.Fields(r.Stdout)) >= 2
	})
}

// TestClusterServiceImageRegistryAuth: a service of an image in a registry
// outside the cluster that needs credentials (Debian's docker-registry
// with htpasswd, on the manager's test host). Without
// --with-registry-auth the worker's pull is refused and the task fails
// saying so; with it the credentials travel in the task spec, the name is
// pinned and the task runs on a worker that never had the image; service
// inspect does not show them.
func TestClusterServiceImageRegistryAuth(t *testing.T) {
	c := &swarmCluster{Cluster: harness.NewCluster(t, 2)}
	mgr, w := c.Hosts[0], c.Hosts[1]
	reg := startRegistryIn(t, mgr, mgr.IP, map[string]string{"alice": "s3cret"})
	for _, h := range c.Hosts {
		h.Daemon.Restart("--insecure-registry", reg.Addr)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	image := reg.Addr + "/team/bb:1"
	must(t, mgr, "import", harness.BusyboxTar(t), image)
	must(t, mgr, "login", "-u", "alice", "-p", "s3cret", reg.Addr)
	must(t, mgr, "push", image)
	must(t, mgr, "rmi", image)
	must(t, mgr, "swarm", "init", "--advertise-addr", mgr.IP)
	c.join(t, w, strings.TrimSpace(must(t, mgr, "swarm", "join-token", "-q", "worker")), "worker")
	c.waitReady(t, mgr)

	r := mgr.Daemon.Run("service", "create", "-d", "--name", "noauth", "--constraint", "node.role==worker", image, "sleep", "600")
	if r.Code != 0 || !strings.Contains(r.Stderr, "could not be accessed on a registry") {
		t.Fatalf("service create without credentials: %s", r)
	}
	waitFor(t, "noauth's task failing for want of credentials", func() bool {
		r := mgr.Daemon.Run("service", "ps", "--no-trunc", "--format", "{{.Error}}", "noauth")
		return r.Code == 0 && strings.Contains(r.Stdout, "No such image: "+image) && strings.Contains(r.Stdout, "authentication required")
	})
	must(t, mgr, "service", "rm", "noauth")

	must(t, mgr, "service", "create", "-d", "--name", "withauth", "--with-registry-auth", "--constraint", "node.role==worker", image, "sleep", "600")
	got := strings.TrimSpace(must(t, mgr, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", "withauth"))
	if !strings.HasPrefix(got, image+"@sha256:") {
		t.Fatalf("service image %q, want %s pinned", got, image)
	}
	c.waitPlacement(t, mgr, "withauth", 60*time.Second, "its task running on the worker", func(p placement) bool {
		return p.total == 1 && p.perNode[w.Name] == 1
	})
	if out := must(t, mgr, "service", "inspect", "withauth"); strings.Contains(out, "s3cret") || strings.Contains(strings.ToLower(out), "registryauth") {
		t.Fatalf("service inspect shows the credentials:\n%s", out)
	}
}
