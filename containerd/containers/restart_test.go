package containers

import (
	"context"
	"errors"
	"testing"
	"time"
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
