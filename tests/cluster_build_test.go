package tests

import (
	"strings"
	"testing"
	"time"
)

// TestClusterBuildPushRun: an image built on the manager from a Dockerfile,
// pushed to the cluster registry with `shoal push` (the node's certificate),
// runs as a service on a worker that never had it.
func TestClusterBuildPushRun(t *testing.T) {
	sc := newSwarm(t, 1, 1)
	mgr, wk := sc.managers[0], sc.workers[0]
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY note.txt /note.txt\nRUN echo built on the manager >> /note.txt\nCMD [\"sh\", \"-c\", \"cat /note.txt; exec sleep 600\"]\n",
		"note.txt":   "from the context\n",
	})
	img := mgr.IP + ":5000/built:1"
	must(t, mgr, "build", "-t", img, ctxDir)
	waitFor(t, "the manager's registry", func() bool {
		conn, err := mgr.DialTimeout("tcp", mgr.IP+":5000", time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	must(t, mgr, "push", img)
	if r := wk.Daemon.Run("image", "inspect", img); r.Code == 0 {
		t.Fatalf("the worker has %s before the service runs", img)
	}
	must(t, mgr, "service", "create", "-d", "--name", "built", "--constraint", "node.role==worker", img)
	var logs string
	if !pollUntil(60*time.Second, func() bool {
		ids := strings.Fields(wk.Daemon.Run("ps", "-q", "--filter", "label=com.docker.swarm.service.name=built").Stdout)
		if len(ids) != 1 {
			return false
		}
		logs = wk.Daemon.Run("logs", ids[0]).Stdout
		return strings.Contains(logs, "built on the manager")
	}) {
		t.Fatalf("no task of the built image ran on the worker; logs %q; service ps:\n%s", logs, mgr.Daemon.Run("service", "ps", "--no-trunc", "built"))
	}
	if logs != "from the context\nbuilt on the manager\n" {
		t.Fatalf("the task printed %q", logs)
	}
}
