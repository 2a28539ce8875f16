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
