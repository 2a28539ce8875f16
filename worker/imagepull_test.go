package worker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/images"
)

// TestPrepareImagePulls: a task whose image the node lacks has it pulled
// with the service's credentials; an image pulled under the cluster
// registry's name is found by its digest; a failed pull is ErrNoSuchImage
// with the registry's reason; a present image is not pulled again.
func TestPrepareImagePulls(t *testing.T) {
	imgs, err := images.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	const dgst = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	var pulls []string
	fail := errors.New("manifest unknown")
	r := &EngineRuntime{Images: imgs, Pull: func(_ context.Context, ref, auth string) error {
		pulls = append(pulls, ref+" "+auth)
		if strings.Contains(ref, "nope") {
			return fail
		}
		// As the cluster registry's pull records it: another name, same digest.
		in := imgs.BeginIngest()
		defer in.Close(false)
		_, err := in.Register([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), nil, "198.18.0.1:5000/bb@"+dgst)
		return err
	}}
	task := func(image string) *api.Task {
		return &api.Task{Id: "t1", Spec: &api.TaskSpec{Container: &api.ContainerSpec{Image: image, RegistryAuth: "AUTH"}}}
	}
	ctx := context.Background()
	if err := r.PrepareImage(ctx, task("bb:1@"+dgst)); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := r.PrepareImage(ctx, task("bb:1@"+dgst)); err != nil {
		t.Fatalf("prepare again: %v", err)
	}
	if len(pulls) != 1 || pulls[0] != "bb:1@"+dgst+" AUTH" {
		t.Fatalf("pulls %q, want one of the pinned name with the service's credentials", pulls)
	}
	err = r.PrepareImage(ctx, task("reg:5000/nope:1"))
	if !errors.Is(err, ErrNoSuchImage) || !strings.Contains(err.Error(), "No such image: reg:5000/nope:1") || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("a failed pull: %v", err)
	}
}

// TestPrepareImageStopsOnShutdown: a task whose desired state becomes
// SHUTDOWN while its image is being pulled stops the pull rather than
// waiting for it.
func TestPrepareImageStopsOnShutdown(t *testing.T) {
	imgs, err := images.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	rt := &EngineRuntime{Images: imgs, Pull: func(ctx context.Context, _, _ string) error {
		close(started)
		<-ctx.Done() // a registry that never answers
		return ctx.Err()
	}}
	r := newTaskRunner(rt, nil, nil, func(string, *api.TaskStatus) {}, nil)
	tk := &api.Task{Id: "t1", DesiredState: api.TaskState_RUNNING, Spec: &api.TaskSpec{Container: &api.ContainerSpec{Image: "reg:5000/slow:1"}}}
	go func() {
		<-started
		r.update(&api.Task{Id: "t1", DesiredState: api.TaskState_SHUTDOWN, Spec: tk.GetSpec()})
	}()
	done := make(chan error, 1)
	go func() { done <- r.prepareImage(context.Background(), &tk) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || tk.GetDesiredState() != api.TaskState_SHUTDOWN {
			t.Fatalf("prepareImage: %v, desired %v", err, tk.GetDesiredState())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pull went on after the task was shut down")
	}
}
