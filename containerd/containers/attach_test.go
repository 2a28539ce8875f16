package containers

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Without StdinOnce the container's stdin outlives an attached client's
// input: a second attach writes to the same process (docker attach).
func TestStdinStaysOpenBetweenAttaches(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "read x; echo got $x; read y; echo got $y"}, OpenStdin: true})
	for _, in := range []string{"a\n", "b\n"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		// The attach lasts until the container's output ends; the first one is cut by its context.
		_ = env.e.Attach(ctx, c.ID, strings.NewReader(in), &syncBuffer{})
		cancel()
	}
	if st := env.wait(c.ID, 10*time.Second); st.ExitCode != 0 {
		t.Fatalf("exit: %+v", st)
	}
	if l := env.logs(c.ID); l != "stdout:got a\nstdout:got b\n" {
		t.Fatalf("log %q", l)
	}
}

// An attach made before a start that fails ends with the start: it is not
// left waiting for a later start (which would not serve it either).
func TestAttachEndsWhenStartFails(t *testing.T) {
	env := newEnv(t)
	c := env.create(Config{Cmd: []string{"/no/such/cmd"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	registered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- env.e.AttachRegistered(ctx, c.ID, nil, &syncBuffer{}, func() { close(registered) })
	}()
	<-registered
	if err := env.e.Start(context.Background(), c.ID); err == nil {
		t.Fatal("start of a missing command succeeded")
	}
	select {
	case err := <-done:
		if err == nil || ctx.Err() != nil {
			t.Fatalf("attach ended with %v (context: %v), want the start's error", err, ctx.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("attach still waiting 5 s after its container's start failed")
	}
}
