package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterSecretsAndConfigs drives secrets and configs through the
// docker CLI on a swarm of a manager and a worker: created from stdin, given
// to a service's tasks on both nodes as read-only files of a tmpfs with the
// owner and mode asked for, refused removal while in use, taken away by
// `service update --secret-rm`, and gone from the nodes' tmpfs with the
// containers that used them.
func TestClusterSecretsAndConfigs(t *testing.T) {
	c := newSwarm(t, 1, 1)
	mgr := c.managers[0]
	docker := dockerCLI(t, mgr.Daemon)
	dockerd := &harness.Daemon{Bin: dockerBin, Socket: mgr.Daemon.Socket}
	dockerMust := func(stdin string, args ...string) string {
		t.Helper()
		r := dockerd.RunStdin([]byte(stdin), args...)
		if r.Code != 0 {
			t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
		}
		return r.Stdout
	}
	dockerMust("hunter2", "secret", "create", "db_pw", "-")
	dockerMust("port=80\n", "config", "create", "app.conf", "-")
	if out := docker("secret", "inspect", "db_pw"); out.Code != 0 || strings.Contains(out.Stdout, "aHVudGVyMg") || strings.Contains(out.Stdout, "hunter2") {
		t.Fatalf("secret inspect shows the data or fails: %s", out)
	}

	dockerMust("", "service", "create", "-d", "--name", "app", "--replicas", "2", "--replicas-max-per-node", "1",
		"--stop-grace-period", "1s",
		"--secret", "source=db_pw,target=pw,uid=1000,gid=1001,mode=0400",
		"--config", "source=app.conf,target=/etc/app.conf",
		"busybox", "sleep", "3600")
	c.waitPlacement(t, mgr, "app", 60*time.Second, "2 running, one per node", func(p placement) bool {
		return p.total == 2 && len(p.perNode) == 2
	})
	for _, h := range c.Hosts {
		id := strings.TrimSpace(must(t, h, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=app"))
		if id == "" {
			t.Fatalf("no task container of app on %s", h.Name)
		}
		out := must(t, h, "exec", id, "sh", "-c",
			"cat /run/secrets/pw; echo; stat -c '%u %g %a' /run/secrets/pw; cat /etc/app.conf; stat -c '%u %g %a' /etc/app.conf; "+
				"grep -E ' /run/secrets/pw | /etc/app.conf ' /proc/mounts | cut -d' ' -f3,4")
		for _, want := range []string{"hunter2\n1000 1001 400\n", "port=80\n0 0 444\n", "tmpfs ro,"} {
			if !strings.Contains(out, want) {
				t.Fatalf("task on %s: want %q in:\n%s", h.Name, want, out)
			}
		}
		if r := h.Daemon.Run("exec", id, "sh", "-c", "echo x > /run/secrets/pw"); r.Code == 0 {
			t.Fatalf("the secret file on %s is writable", h.Name)
		}
	}
	if r := docker("secret", "rm", "db_pw"); r.Code == 0 || !strings.Contains(r.Stderr, "in use by service app") {
		t.Fatalf("secret rm of a secret in use: %s", r)
	}

	dockerMust("", "service", "update", "-d", "--secret-rm", "db_pw", "app")
	var ls string
	if !pollUntil(60*time.Second, func() bool {
		for _, h := range c.Hosts {
			id := strings.TrimSpace(h.Daemon.Run("ps", "-q", "--filter", "label=com.docker.swarm.service.name=app").Stdout)
			if id == "" || strings.Contains(id, "\n") {
				return false // replacing
			}
			if h.Daemon.Run("exec", id, "test", "-e", "/run/secrets/pw").Code == 0 {
				return false
			}
			// Only the new task's files remain (its config).
			ents, _ := os.ReadDir(filepath.Join(h.Daemon.ExecRoot, "secrets"))
			if len(ents) != 1 {
				ls = h.Name + ": " + strings.Join(names(ents), " ")
				return false
			}
		}
		return true
	}) {
		t.Fatalf("after --secret-rm: the secret is still shown, or files are left (%s)", ls)
	}
	dockerMust("", "secret", "rm", "db_pw")
	dockerMust("", "service", "rm", "app")
	if !pollUntil(30*time.Second, func() bool {
		for _, h := range c.Hosts {
			if ents, _ := os.ReadDir(filepath.Join(h.Daemon.ExecRoot, "secrets")); len(ents) != 0 {
				ls = h.Name + ": " + strings.Join(names(ents), " ")
				return false
			}
		}
		return true
	}) {
		t.Fatalf("files left on the nodes' tmpfs after service rm: %s", ls)
	}
	dockerMust("", "config", "rm", "app.conf")
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestSecretsDockerPy: docker-py, the other real client, creates a secret
// and a config and gives them to a service; its task reads them.
func TestSecretsDockerPy(t *testing.T) {
	c := harness.NewCluster(t, 1)
	h := c.Hosts[0]
	h.Daemon.Must("import", harness.BusyboxTar(t), "busybox:latest")
	must(t, h, "swarm", "init", "--advertise-addr", h.IP)
	out := dockerPy(t, h.Daemon, `
s = c.secrets.create(name="pypw", data=b"s3cr3t", labels={"a": "b"})
assert "Data" not in c.secrets.get("pypw").attrs["Spec"], c.secrets.get("pypw").attrs
cfg = c.configs.create(name="py.conf", data=b"k=v")
svc = c.services.create("busybox", ["sleep", "3600"], name="pysvc",
    secrets=[docker.types.SecretReference(s.id, "pypw", filename="x", mode=0o440)],
    configs=[docker.types.ConfigReference(cfg.id, "py.conf")])
for i in range(120):
    if [t for t in svc.tasks() if t["Status"]["State"] == "running"]:
        break
    time.sleep(0.25)
ctr = c.containers.list(filters={"label": "com.docker.swarm.service.name=pysvc"})[0]
print(ctr.exec_run("sh -c 'cat /run/secrets/x; echo; stat -c %a /run/secrets/x; cat /py.conf'").output.decode())
svc.remove()
`)
	if out != "s3cr3t\n440\nk=v" {
		t.Fatalf("docker-py's service read %q", out)
	}
}
