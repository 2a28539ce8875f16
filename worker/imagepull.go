package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/images"
)

// ImagePreparer is a Runtime that gets a task's image itself, pulling it
// when the node lacks it; the agent calls it in place of CheckImage while
// the task is PREPARING.
type ImagePreparer interface {
	// PrepareImage returns an error matching ErrNoSuchImage, with the
	// reason, when t's image is not here and cannot be pulled.
	PrepareImage(ctx context.Context, t *api.Task) error
}

var _ ImagePreparer = (*EngineRuntime)(nil)

// PrepareImage implements ImagePreparer: the image is pulled (by the
// digest the manager pinned) when it is not in the node's store. Pulls are
// one at a time, so tasks of one service pull their image once.
func (r *EngineRuntime) PrepareImage(ctx context.Context, t *api.Task) error {
	cs := t.GetSpec().GetContainer()
	ref := cs.GetImage()
	err := r.CheckImage(ctx, ref)
	if err == nil || !errors.Is(err, ErrNoSuchImage) || r.Pull == nil {
		return err
	}
	// One pull at a time, but a task shut down while it waits stops waiting.
	r.pullOnce.Do(func() { r.pullSem = make(chan struct{}, 1) })
	select {
	case r.pullSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrNoSuchImage, ref, ctx.Err())
	}
	defer func() { <-r.pullSem }()
	if err := r.CheckImage(ctx, ref); err == nil || !errors.Is(err, ErrNoSuchImage) {
		return err // another task pulled it meanwhile
	}
	if err := r.Pull(ctx, ref, cs.GetRegistryAuth()); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoSuchImage, ref, err)
	}
	return r.CheckImage(ctx, ref)
}

// localImage is the ID of the image ref names in the node's store. A
// pinned name@digest pulled under another name (the cluster registry's
// host) is the same manifest, so any repo digest with that digest is it.
func (r *EngineRuntime) localImage(ref string) (string, error) {
	img, err := r.Images.Get(ref)
	if err == nil {
		return img.ID, nil
	}
	parsed, perr := images.ParseReference(ref)
	if perr != nil || parsed.Digest == "" || !errors.Is(err, images.ErrNotFound) {
		return "", err
	}
	all, lerr := r.Images.List()
	if lerr != nil {
		return "", lerr
	}
	for _, im := range all {
		for _, rd := range im.RepoDigests {
			if strings.HasSuffix(rd, "@"+string(parsed.Digest)) {
				return im.ID, nil
			}
		}
	}
	return "", err
}

// prepareImage gets t's image (pulled if the runtime can) while it keeps
// applying the task's updates: a task shut down or removed during a long
// pull stops the pull instead of waiting for it.
func (r *taskRunner) prepareImage(ctx context.Context, t **api.Task) error {
	p, ok := r.rt.(ImagePreparer)
	if !ok {
		return r.rt.CheckImage(ctx, (*t).GetSpec().GetContainer().GetImage())
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	task := *t
	go func() { done <- p.PrepareImage(pctx, task) }()
	for {
		select {
		case err := <-done:
			return err
		case <-r.removed:
			cancel()
			return <-done
		case u := <-r.updates:
			*t = r.apply(*t, u)
			if (*t).GetDesiredState() >= api.TaskState_SHUTDOWN {
				cancel()
				return <-done
			}
		}
	}
}
