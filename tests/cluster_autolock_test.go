package tests

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// raftPlaintext lists the files of h's raft state (WAL segments and
// snapshots) that hold any of secrets in the clear.
func raftPlaintext(t *testing.T, h *harness.Host, secrets ...string) []string {
	t.Helper()
	var found []string
	dir := filepath.Join(h.Daemon.Root, "swarm", "raft")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				found = append(found, p+" holds "+s[:min(len(s), 24)])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

// dekFile is h's raft data key file.
func dekFile(t *testing.T, h *harness.Host) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Daemon.Root, "swarm", "raft-dek.json"))
	if err != nil {
		t.Fatalf("data key of %s: %v", h.Name, err)
	}
	return string(b)
}

func localNodeState(t *testing.T, h *harness.Host) string {
	t.Helper()
	code, body := apiDo(t, h.Daemon.Socket, http.MethodGet, "/info", "")
	var info struct {
		Swarm struct{ LocalNodeState string }
	}
	if err := json.Unmarshal([]byte(body), &info); code != http.StatusOK || err != nil {
		t.Fatalf("/info on %s: %d %v %s", h.Name, code, err, body)
	}
	return info.Swarm.LocalNodeState
}

// mustSettled runs args on h once the managers have a leader again (a
// manager back from a restart may call an election).
func mustSettled(t *testing.T, h *harness.Host, args ...string) string {
	t.Helper()
	var r harness.Result
	waitFor(t, "a leader for "+strings.Join(args, " "), func() bool {
		r = h.Daemon.Run(args...)
		return r.Code == 0 || !strings.Contains(r.Stderr, "does not have a leader")
	})
	if r.Code != 0 {
		t.Fatalf("shoal %s on %s: %s", strings.Join(args, " "), h.Name, r)
	}
	return r.Stdout
}

var unlockKeyRE = regexp.MustCompile(`SWMKEY-1-[A-Za-z0-9+/]+`)

// TestClusterAutolock: the raft state of every manager holds neither the
// CA key, nor a join token, nor a service's data in the clear; `swarm
// update --autolock=true` seals each manager's data key with the unlock
// key, and that of a worker promoted afterwards; a restarted manager stays locked (info says "locked", swarm
// commands say so) until `swarm unlock` gets the right key, a wrong one is
// refused; `swarm unlock-key --rotate` replaces the key on every manager;
// --autolock=false lets a manager restart unlocked again. A locked
// manager's TLS key is sealed: its disk gives no identity to call the
// cluster with.
func TestClusterAutolock(t *testing.T) {
	c := newSwarm(t, 2, 1)
	m1, m2, w := c.managers[0], c.managers[1], c.workers[0]
	const marker = "autolock-marker-7c21e"
	must(t, m1, "service", "create", "-d", "--name", "web", "--env", "SECRET="+marker, "busybox", "sleep", "86400")
	must(t, m1, "swarm", "join-token", "--rotate", "worker") // a token written to the log now
	token := strings.TrimSpace(must(t, m1, "swarm", "join-token", "-q", "worker"))
	waitFor(t, "m2 has the service", func() bool { return strings.Contains(serviceReplicas(m2, "web"), "/") })
	for _, h := range c.managers {
		if found := raftPlaintext(t, h, marker, token, "PRIVATE KEY"); len(found) > 0 {
			t.Fatalf("plaintext in the raft state of %s: %v", h.Name, found)
		}
	}

	out := must(t, m1, "swarm", "update", "--autolock=true")
	key := unlockKeyRE.FindString(out)
	if key == "" || !strings.Contains(out, "shoal swarm unlock") {
		t.Fatalf("swarm update --autolock=true printed no unlock key:\n%s", out)
	}
	if got := strings.TrimSpace(must(t, m2, "swarm", "unlock-key", "-q")); got != key {
		t.Fatalf("unlock-key on m2 = %q, want %q", got, key)
	}
	for _, h := range c.managers {
		waitFor(t, h.Name+"'s data key sealed", func() bool { return strings.Contains(dekFile(t, h), "sealed_dek") })
	}
	// A manager made after autolock was turned on seals its new data key too.
	must(t, m1, "node", "promote", w.Name)
	waitFor(t, w.Name+"'s data key sealed", func() bool {
		_, err := os.Stat(filepath.Join(w.Daemon.Root, "swarm", "raft-dek.json"))
		return err == nil && strings.Contains(dekFile(t, w), "sealed_dek")
	})
	if found := raftPlaintext(t, w, marker, token, "PRIVATE KEY"); len(found) > 0 {
		t.Fatalf("plaintext in the raft state of the promoted %s: %v", w.Name, found)
	}

	restartLocked := func() {
		t.Helper()
		m2.Restart()
		if s := localNodeState(t, m2); s != "locked" {
			t.Fatalf("restarted autolocked manager: LocalNodeState %q, want locked", s)
		}
		expectFail(t, m2, []string{`Swarm is encrypted and needs to be unlocked before it can be used. Please use "docker swarm unlock" to unlock it.`}, "node", "ls")
	}
	restartLocked()
	// A copy of the locked manager's disk gives no identity that the
	// cluster accepts: its TLS key is sealed too, as in Swarm.
	if err := stealManagerIdentity(m2, m1); err == nil {
		t.Fatalf("the key on a locked manager's disk is in the clear: as %s it listed the nodes on %s", m2.Name, m1.Name)
	} else {
		t.Logf("stolen identity refused: %v", err)
	}
	expectFail(t, m2, []string{"Swarm is encrypted and needs to be unlocked"}, "swarm", "unlock-key")
	r := m2.Daemon.RunStdin([]byte("SWMKEY-1-"+strings.Repeat("A", 43)+"\n"), "swarm", "unlock")
	if r.Code == 0 || !strings.Contains(r.Stderr, "swarm could not be unlocked: invalid key provided") {
		t.Fatalf("unlock with a wrong key: %s", r)
	}
	if s := localNodeState(t, m2); s != "locked" {
		t.Fatalf("after a wrong key: %q, want locked", s)
	}
	if r := m2.Daemon.RunStdin([]byte(key+"\n"), "swarm", "unlock"); r.Code != 0 {
		t.Fatalf("unlock with the key: %s", r)
	}
	waitFor(t, "m2 active and serving", func() bool {
		return localNodeState(t, m2) == "active" && m2.Daemon.Run("node", "ls").Code == 0
	})

	out = mustSettled(t, m1, "swarm", "unlock-key", "--rotate")
	newKey := unlockKeyRE.FindString(out)
	if newKey == "" || newKey == key || !strings.Contains(out, "Successfully rotated manager unlock key.") {
		t.Fatalf("unlock-key --rotate printed:\n%s", out)
	}
	sealed := dekFile(t, m2)
	waitFor(t, "m2 resealed with the new key", func() bool {
		return strings.TrimSpace(must(t, m2, "swarm", "unlock-key", "-q")) == newKey && dekFile(t, m2) != sealed
	})
	restartLocked()
	if r := m2.Daemon.RunStdin([]byte(key), "swarm", "unlock"); r.Code == 0 {
		t.Fatal("the rotated-out key still unlocks")
	}
	if r := m2.Daemon.RunStdin([]byte(newKey), "swarm", "unlock"); r.Code != 0 {
		t.Fatalf("unlock with the rotated key: %s", r)
	}
	waitFor(t, "m2 serving after unlock", func() bool { return m2.Daemon.Run("node", "ls").Code == 0 })

	mustSettled(t, m1, "swarm", "update", "--autolock=false")
	expectFail(t, m1, []string{"no unlock key is set"}, "swarm", "unlock-key")
	expectFail(t, m1, []string{"autolock is not turned on"}, "swarm", "unlock-key", "--rotate")
	waitFor(t, "m2's data key in the clear", func() bool { return !strings.Contains(dekFile(t, m2), "sealed_dek") })
	m2.Restart()
	waitFor(t, "m2 active without unlock", func() bool {
		return localNodeState(t, m2) == "active" && m2.Daemon.Run("node", "ls").Code == 0
	})
	expectFail(t, m2, []string{"swarm is not locked"}, "swarm", "unlock")
	for _, h := range c.managers {
		if found := raftPlaintext(t, h, marker, token, "PRIVATE KEY"); len(found) > 0 {
			t.Fatalf("plaintext in the raft state of %s: %v", h.Name, found)
		}
	}
}
