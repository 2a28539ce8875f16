package containers

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestExecExitCodeSurvivesRestart starts an exec, drops the engine (a
// daemon crash) while the exec runs, opens a new engine and expects the
// exec's record and, once it ends, its real exit code; an exec that ended
// before the restart keeps its code too.
func TestExecExitCodeSurvivesRestart(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sleep", "1000"}})
	done, err := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"sh", "-c", "exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.e.ExecStart(context.Background(), done, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	running, err := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"sh", "-c", "sleep 3; exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = env.e.ExecStart(context.Background(), running, nil, io.Discard) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if x, err := env.e.ExecInspect(running); err == nil && x.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exec did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	env.crash()
	env.open()

	if x, err := env.e.ExecInspect(done); err != nil || x.Running || x.ExitCode != 3 || x.ContainerID != c.ID {
		t.Fatalf("exec that ended before the restart: %+v %v", x, err)
	}
	// Normally still running (its supervisor is watched); on a loaded
	// machine it may have ended during the reopen (its exit.json is read).
	x, err := env.e.ExecInspect(running)
	if err != nil || x.Pid == 0 {
		t.Fatalf("exec running across the restart: %+v %v", x, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for x.Running && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		x, _ = env.e.ExecInspect(running)
	}
	if x.Running || x.ExitCode != 7 {
		t.Fatalf("exec that ended after the restart: %+v, want exit code 7", x)
	}
	if err := env.e.Remove(context.Background(), c.ID, true); err != nil {
		t.Fatal(err)
	}
	if left := env.traces(c.ID); len(left) > 0 {
		t.Fatalf("left after remove: %v", left)
	}
}

// TestRemoveDuringExec force-removes a container while an exec runs in it:
// the exec's supervisor ends with it and nothing is left.
func TestRemoveDuringExec(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sleep", "1000"}})
	x, err := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- env.e.ExecStart(context.Background(), x, nil, io.Discard) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := env.e.ExecInspect(x); err == nil && st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exec did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := env.e.Remove(context.Background(), c.ID, true); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("ExecStart did not return after the container was removed")
	}
	if st, _ := env.e.ExecInspect(x); st.Running || st.ExitCode != 137 {
		t.Errorf("exec of a removed container: %+v", st)
	}
	if left := env.traces(c.ID); len(left) > 0 {
		t.Fatalf("left after remove: %v", left)
	}
}
