package containers

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An exited container starts again under a new shim: same record, same log
// (appended), a new StartedAt; next-exit waits for the run after the call.
func TestStartAgainAndNextExit(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "echo run; sleep 0.2"}})
	if err := env.e.Start(context.Background(), c.ID); !errors.Is(err, ErrNotModified) {
		t.Fatalf("start of a running container: %v", err)
	}
	first := env.wait(c.ID, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := make(chan State, 1)
	registered := make(chan struct{})
	go func() {
		st, err := env.e.Wait(ctx, c.ID, WaitNextExit, func() { close(registered) })
		if err != nil {
			t.Error(err)
		}
		next <- st
	}()
	<-registered
	if err := env.e.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	st := <-next
	if st.Running || !st.FinishedAt.After(first.FinishedAt) || !st.StartedAt.After(first.StartedAt) {
		t.Fatalf("next exit %+v after first %+v", st, first)
	}
	if l := env.logs(c.ID); l != "stdout:run\nstdout:run\n" {
		t.Fatalf("log over two runs: %q", l)
	}
}

func TestKill(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "trap 'echo usr1' USR1; while true; do sleep 0.05; done"}})
	time.Sleep(100 * time.Millisecond) // the trap is set
	if err := env.e.Kill(c.Name, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for env.logs(c.ID) != "stdout:usr1\n" {
		if time.Now().After(deadline) {
			t.Fatalf("log after USR1: %q", env.logs(c.ID))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := env.e.Kill(c.ID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := env.wait(c.ID, 5*time.Second); st.ExitCode != 137 {
		t.Fatalf("after SIGKILL: %+v", st)
	}
	if err := env.e.Kill(c.ID, unix.SIGKILL); !errors.Is(err, ErrConflict) {
		t.Fatalf("kill of an exited container: %v", err)
	}
}
