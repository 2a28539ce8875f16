package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCompatDockerStack drives the docker CLI's `stack deploy` and `stack
// rm`, a client-side compose reader that speaks only the services, networks,
// secrets and configs API: a two-service stack with an overlay network, a
// config and a secret deploys and runs, and `stack rm` removes all of it
// (its networks while the removed services' tasks are still stopping).
func TestCompatDockerStack(t *testing.T) {
	c := newSwarm(t, 1, 0, "--default-addr-pool", testAddrPool)
	h := c.Hosts[0]
	docker := dockerCLI(t, h.Daemon)
	dir := t.TempDir()
	compose := `version: "3.8"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo up; sleep 300"]
    deploy:
      replicas: 2
    environment:
      GREETING: hello
    networks: [back]
    secrets: [pw]
  cfg:
    image: busybox:latest
    command: ["sleep", "300"]
    deploy:
      mode: global
    configs:
      - source: conf
        target: /etc/conf
networks:
  back:
    driver: overlay
configs:
  conf:
    file: ./conf.txt
secrets:
  pw:
    file: ./pw.txt
`
	for name, body := range map[string]string{"compose.yml": compose, "conf.txt": "a config\n", "pw.txt": "a secret\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer docker("stack", "rm", "st")
	if r := docker("stack", "deploy", "-c", filepath.Join(dir, "compose.yml"), "st"); r.Code != 0 || !strings.Contains(r.Stdout, "Creating service st_web") {
		t.Fatalf("docker stack deploy: %s", r)
	}
	waitFor(t, "the stack's services to run", func() bool {
		r := docker("stack", "services", "st", "--format", "{{.Name}} {{.Replicas}}")
		return strings.Contains(r.Stdout, "st_web 2/2") && strings.Contains(r.Stdout, "st_cfg 1/1")
	})
	task := func(svc string) string {
		r := docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)
		return strings.Fields(r.Stdout + " ")[0]
	}
	if r := docker("exec", task("st_web"), "sh", "-c", "echo $GREETING; cat /run/secrets/pw"); r.Stdout != "hello\na secret\n" {
		t.Errorf("st_web's environment and secret: %s", r)
	}
	if r := docker("exec", task("st_cfg"), "cat", "/etc/conf"); r.Stdout != "a config\n" {
		t.Errorf("st_cfg's config: %s", r)
	}
	if r := docker("network", "inspect", "-f", "{{.Driver}} {{.Scope}}", "st_back"); strings.TrimSpace(r.Stdout) != "overlay swarm" {
		t.Errorf("the stack's network: %s", r)
	}
	// The tasks' shells ignore SIGTERM (PID 1), so they stop at the end of
	// their grace period; the network's removal waits for them, and so
	// stack rm returns only once none of them runs (README: "stack rm takes
	// a task's stop grace period").
	began := time.Now()
	r := docker("stack", "rm", "st")
	if r.Code != 0 || strings.Contains(r.Stdout+r.Stderr, "Failed") {
		t.Fatalf("docker stack rm: %s", r)
	}
	t.Logf("docker stack rm took %s", time.Since(began).Round(time.Millisecond))
	for _, svc := range []string{"st_web", "st_cfg"} {
		if r := docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc); r.Code != 0 || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("tasks of %s still run after stack rm returned: %s", svc, r)
		}
	}
	for _, what := range [][]string{{"service", "ls", "-q"}, {"secret", "ls", "-q"}, {"config", "ls", "-q"}, {"network", "ls", "-q", "--filter", "name=st_"}} {
		if r := docker(what...); strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("docker %v after stack rm: %s", what, r)
		}
	}
}
