package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestExecExitCodeAfterDaemonKill starts a detached exec, kills the daemon
// with -9 while it runs, restarts the daemon and expects the exec's real
// exit code from GET /exec/ID/json.
func TestExecExitCodeAfterDaemonKill(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", id)
	code, body := apiPost(t, d.Socket, "/containers/"+id+"/exec", `{"Cmd":["sh","-c","sleep 2; exit 7"]}`)
	var created struct{ Id string }
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil || created.Id == "" {
		t.Fatalf("exec create: %d %s", code, body)
	}
	if code, body := apiPost(t, d.Socket, "/exec/"+created.Id+"/start", `{"Detach":true}`); code != http.StatusOK {
		t.Fatalf("exec start: %d %s", code, body)
	}
	type execJSON struct {
		Running  bool
		ExitCode *int
		Pid      int
	}
	inspect := func() (execJSON, int, string) {
		code, body := apiDo(t, d.Socket, http.MethodGet, "/exec/"+created.Id+"/json", "")
		var x execJSON
		_ = json.Unmarshal([]byte(body), &x)
		return x, code, body
	}
	waitFor(t, "exec running", func() bool { x, _, _ := inspect(); return x.Running && x.Pid > 0 })
	d.Kill9()
	d.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		x, code, body := inspect()
		if code == http.StatusOK && !x.Running && x.ExitCode != nil {
			if *x.ExitCode != 7 {
				t.Fatalf("exec exit code after the daemon's restart: %d, want 7 (%s)", *x.ExitCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec after the daemon's restart: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Must("rm", "-f", id)
	assertNoTrace(t, d, id)
}
