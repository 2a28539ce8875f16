package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestPoststartPoststopHooksRun checks that start and delete still find a
// container's hooks, whose presence state.json records at create (NoHooks),
// and that a container without hooks is recorded as such.
func TestPoststartPoststopHooksRun(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	out := t.TempDir()
	hook := func(name string) specs.Hook {
		// The hook reads the container's state on stdin.
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + filepath.Join(out, name)}}
	}
	bundle := newBundle(t, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{Poststart: []specs.Hook{hook("poststart")}, Poststop: []specs.Hook{hook("poststop")}}
	}, "true")
	c := ctx(t)
	if err := r.Create(c, "hooks", bundle, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := r.load("hooks"); err != nil || st.NoHooks {
		t.Fatalf("state of a container with hooks: NoHooks=%v (%v)", st != nil && st.NoHooks, err)
	}
	if err := r.Start(c, "hooks"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(c, "hooks"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(c, "hooks", false); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"poststart", "poststop"} {
		b, err := os.ReadFile(filepath.Join(out, phase))
		if err != nil {
			t.Fatalf("%s hook did not run: %v", phase, err)
		}
		var st specs.State
		if err := json.Unmarshal(b, &st); err != nil || st.ID != "hooks" {
			t.Errorf("%s hook got state %q (%v)", phase, b, err)
		}
	}

	plain := newBundle(t, nil, "true")
	if err := r.Create(c, "nohooks", plain, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := r.load("nohooks"); err != nil || !st.NoHooks {
		t.Errorf("state of a container without hooks: NoHooks=%v (%v)", st != nil && st.NoHooks, err)
	}
	if err := r.Delete(c, "nohooks", true); err != nil {
		t.Fatal(err)
	}
}
