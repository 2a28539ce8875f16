package worker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

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
