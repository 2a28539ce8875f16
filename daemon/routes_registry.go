package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"

	"github.com/shoal-project/shoal/containerd/distribution"
	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/containerd/images"
)

// registryService is the registry client as the image routes use it.
type registryService interface {
	Pull(ctx context.Context, ref string, opts distribution.PullOptions) (images.Image, error)
	Push(ctx context.Context, ref string, opts distribution.PushOptions) (distribution.PushResult, error)
	Login(ctx context.Context, server string, auth distribution.Auth) error
	Tags(ctx context.Context, name string, auth distribution.Auth) ([]string, error)
}

// decodeAuth reads docker's X-Registry-Auth header: base64url JSON of an
// AuthConfig. An empty header means anonymous.
func decodeAuth(h string) (distribution.Auth, error) {
	if h == "" {
		return distribution.Auth{}, nil
	}
	raw, err := decodeHeader("X-Registry-Auth", h)
	if err != nil {
		return distribution.Auth{}, err
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(raw, &ac); err != nil {
		return distribution.Auth{}, badRequest("invalid X-Registry-Auth header: %v", err)
	}
	return authOf(ac)
}

// decodeHeader decodes a base64 header as clients send them (URL or
// standard alphabet, with or without padding).
func decodeHeader(name, h string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if raw, err := enc.DecodeString(h); err == nil {
			return raw, nil
		}
	}
	return nil, badRequest("invalid %s header: not base64", name)
}

func authOf(ac registry.AuthConfig) (distribution.Auth, error) {
	a := distribution.Auth{Username: ac.Username, Password: ac.Password, IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}
	if a.Username == "" && ac.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(ac.Auth)
		if err != nil {
			return a, badRequest("invalid auth in registry credentials")
		}
		a.Username, a.Password, _ = strings.Cut(string(b), ":")
	}
	return a, nil
}

// progressMessage turns a pull or push step into docker's JSON message.
func progressMessage(p distribution.Progress) jsonstream.Message {
	m := jsonstream.Message{ID: p.ID, Status: p.Status}
	if p.Total > 0 || p.Current > 0 {
		m.Progress = &jsonstream.Progress{Current: p.Current, Total: p.Total}
	}
	return m
}

// imagePull is POST /images/create?fromImage=&tag=&platform=: a pull from
// the registry the reference names, streamed as docker's progress.
func (d *Daemon) imagePull(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ref := q.Get("fromImage")
	if tag := q.Get("tag"); tag != "" {
		if strings.HasPrefix(tag, "sha256:") {
			ref += "@" + tag
		} else {
			ref += ":" + tag
		}
	}
	parsed, err := images.ParseReference(ref)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if _, err := distribution.ParsePlatform(q.Get("platform")); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	auth, err := decodeAuth(r.Header.Get("X-Registry-Auth"))
	if err != nil {
		writeError(w, err)
		return
	}
	if d.registry == nil {
		writeError(w, errors.New("no registry client"))
		return
	}
	ctx, cancel := d.streamContext(r)
	defer cancel()
	refs := []string{parsed.String()}
	allTags := q.Get("tag") == "" && nameOnly(q.Get("fromImage"))
	if allTags {
		// As dockerd: fromImage without a tag is a pull of every tag.
		tags, err := d.registry.Tags(ctx, parsed.Name(), auth)
		if err != nil {
			writeError(w, err)
			return
		}
		refs = refs[:0]
		for _, t := range tags {
			refs = append(refs, parsed.Name()+":"+t)
		}
	}
	send := streamJSON(w)
	changed := false
	for _, ref := range refs {
		before, _ := d.images.Get(ref)
		img, err := d.registry.Pull(ctx, ref, distribution.PullOptions{
			Platform: q.Get("platform"), Auth: auth,
			Progress: func(p distribution.Progress) { send(progressMessage(p)) },
		})
		if err != nil {
			send(jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}})
			return
		}
		changed = changed || before.ID != img.ID
		d.publish(events.TypeImage, "pull", ref, map[string]string{"name": ref})
	}
	name := parsed.String()
	if allTags {
		name = parsed.Name()
	}
	if changed {
		send(jsonstream.Message{Status: "Status: Downloaded newer image for " + name})
	} else {
		send(jsonstream.Message{Status: "Status: Image is up to date for " + name})
	}
}

// nameOnly tells whether an image name has neither tag nor digest.
func nameOnly(name string) bool {
	last := name[strings.LastIndexByte(name, '/')+1:]
	return !strings.ContainsAny(last, ":@")
}

// imagePush is POST /images/{name}/push?tag=.
func (d *Daemon) imagePush(w http.ResponseWriter, r *http.Request, name string) {
	ref := name
	if tag := r.URL.Query().Get("tag"); tag != "" {
		ref += ":" + tag
	}
	parsed, err := images.ParseReference(ref)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	auth, err := decodeAuth(r.Header.Get("X-Registry-Auth"))
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := d.images.Get(parsed.String()); err != nil {
		writeError(w, fmt.Errorf("An image does not exist locally with the tag: %s: %w", parsed.Name(), err))
		return
	}
	ctx, cancel := d.streamContext(r)
	defer cancel()
	send := streamJSON(w)
	pusher := d.registry
	if d.taskImages != nil && parsed.Domain != "" && slices.Contains(d.swarm.clusterRegistryHosts(), parsed.Domain) {
		// A manager's registry is reached as the task pulls reach it: with
		// the node's certificate, trusting the cluster CA only.
		pusher = d.taskImages.cluster
	}
	res, err := pusher.Push(ctx, parsed.String(), distribution.PushOptions{
		Auth: auth, Progress: func(p distribution.Progress) { send(progressMessage(p)) },
	})
	if err != nil {
		send(jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}})
		return
	}
	aux := json.RawMessage(fmt.Sprintf(`{"Tag":%q,"Digest":%q,"Size":%d}`, res.Tag, res.Digest, res.Size))
	send(jsonstream.Message{Aux: &aux})
	d.publish(events.TypeImage, "push", parsed.String(), map[string]string{"name": parsed.String()})
}

// auth is POST /auth: check credentials against a registry.
func (d *Daemon) auth(w http.ResponseWriter, r *http.Request) {
	var ac registry.AuthConfig
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&ac); err != nil {
		writeError(w, badRequest("invalid credentials: %v", err))
		return
	}
	a, err := authOf(ac)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.registry.Login(r.Context(), ac.ServerAddress, a); err != nil {
		writeJSON(w, http.StatusUnauthorized, errorResponse{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
}
