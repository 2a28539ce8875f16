package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runHooks runs hooks in order with the container state on stdin. The
// runtime-namespace hooks are supported (prestart, createRuntime,
// poststart, poststop); createContainer and startContainer, which must run
// inside the container's namespaces, are not.
func runHooks(ctx context.Context, phase string, hooks []specs.Hook, state specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	in, err := json.Marshal(state)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		hctx := ctx
		if h.Timeout != nil && *h.Timeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
			defer cancel()
		}
		args := h.Args
		if len(args) == 0 {
			args = []string{h.Path}
		}
		cmd := exec.CommandContext(hctx, h.Path)
		cmd.Args = args
		cmd.Env = h.Env
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			msg := bytes.TrimSpace(stderr.Bytes())
			return fmt.Errorf("%s hook %d (%s): %w %s", phase, i, h.Path, err, bytes.ReplaceAll(msg, []byte("\n"), []byte(" ")))
		}
	}
	return nil
}

// warnHooks runs hooks whose failure must only be reported (poststart,
// poststop).
func warnHooks(ctx context.Context, phase string, hooks []specs.Hook, state specs.State) {
	if err := runHooks(ctx, phase, hooks, state); err != nil {
		fmt.Fprintln(os.Stderr, "shoal runtime: warning:", err)
	}
}

// savedSpec reads the copy of config.json taken at create.
func (r *Runtime) savedSpec(id string) (*specs.Spec, error) {
	b, err := os.ReadFile(r.dir(id) + "/" + configFile)
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
