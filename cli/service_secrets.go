package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// Service secrets and configs: service create's --secret and --config,
// service update's --secret-add/--secret-rm and --config-add/--config-rm,
// with docker's syntax and its resolution of names to IDs.

// fileRef is one --secret or --config value: the object's name and the
// file it becomes in the container.
type fileRef struct {
	source, target, uid, gid string
	mode                     os.FileMode
}

// parseFileRef parses a --secret or --config value as docker does: NAME,
// or CSV fields source (src), target, uid, gid and mode (a number in Go's
// syntax: 0400 is octal, as docker reads it). The file defaults to the
// name, owned by 0:0, mode 0444. Unlike docker, uid and gid must be
// numbers (docker's daemon refuses others only when a task starts) and the
// mode must hold permission bits only.
func parseFileRef(kind, value string) (fileRef, error) {
	r := fileRef{uid: "0", gid: "0", mode: 0o444}
	fields, err := csv.NewReader(strings.NewReader(value)).Read()
	if err != nil {
		return r, err
	}
	if len(fields) == 1 && !strings.Contains(fields[0], "=") {
		r.source, r.target = fields[0], fields[0]
		return r, nil
	}
	for _, field := range fields {
		key, val, ok := strings.Cut(field, "=")
		if !ok || key == "" {
			return r, fmt.Errorf("invalid field '%s' must be a key=value pair", field)
		}
		switch strings.ToLower(key) {
		case "source", "src":
			r.source = val
		case "target":
			r.target = val
		case "uid", "gid":
			if _, err := strconv.ParseUint(val, 10, 32); err != nil {
				return r, fmt.Errorf("invalid %s specified: %q is not a numeric ID", strings.ToLower(key), val)
			}
			if strings.ToLower(key) == "uid" {
				r.uid = val
			} else {
				r.gid = val
			}
		case "mode":
			m, err := strconv.ParseUint(val, 0, 32)
			if err != nil {
				return r, fmt.Errorf("invalid mode specified: %v", err)
			}
			if os.FileMode(m)&^os.ModePerm != 0 {
				return r, fmt.Errorf("invalid mode specified: %s is not a permission mode (0000-0777)", val)
			}
			r.mode = os.FileMode(m)
		default:
			return r, fmt.Errorf("invalid field in %s request: %s", kind, key)
		}
	}
	if r.source == "" {
		return r, errors.New("source is required")
	}
	if r.target == "" {
		r.target = r.source
	}
	return r, nil
}

// secretOpt is the repeatable --secret (--secret-add) flag.
type secretOpt struct{ refs []*swarm.SecretReference }

func (o *secretOpt) Set(v string) error {
	r, err := parseFileRef("secret", v)
	if err != nil {
		return err
	}
	o.refs = append(o.refs, &swarm.SecretReference{
		SecretName: r.source,
		File:       &swarm.SecretReferenceFileTarget{Name: r.target, UID: r.uid, GID: r.gid, Mode: r.mode},
	})
	return nil
}

// String is docker's "name -> target, ..."; empty when unused, so that
// help shows no default.
func (o *secretOpt) String() string {
	var s []string
	for _, r := range o.refs {
		s = append(s, r.SecretName+" -> "+r.File.Name)
	}
	return strings.Join(s, ", ")
}

func (o *secretOpt) Type() string { return "secret" }

// configOpt is the repeatable --config (--config-add) flag.
type configOpt struct{ refs []*swarm.ConfigReference }

func (o *configOpt) Set(v string) error {
	r, err := parseFileRef("config", v)
	if err != nil {
		return err
	}
	o.refs = append(o.refs, &swarm.ConfigReference{
		ConfigName: r.source,
		File:       &swarm.ConfigReferenceFileTarget{Name: r.target, UID: r.uid, GID: r.gid, Mode: r.mode},
	})
	return nil
}

func (o *configOpt) String() string {
	var s []string
	for _, r := range o.refs {
		s = append(s, r.ConfigName+" -> "+r.File.Name)
	}
	return strings.Join(s, ", ")
}

func (o *configOpt) Type() string { return "config" }

// secretPath and configPath are where a file target lands in the
// container, as docker's daemon places them: a relative secret target
// under /run/secrets, a relative config target under /.
func secretPath(target string) string {
	if path.IsAbs(target) {
		return path.Clean(target)
	}
	return path.Join("/run/secrets", target)
}

func configPath(target string) string { return path.Join("/", target) }

// checkSecretTargets refuses two secrets at one file, in docker's words.
func checkSecretTargets(refs []*swarm.SecretReference) error {
	seen := map[string]bool{}
	for _, r := range refs {
		if r.File == nil {
			continue
		}
		p := secretPath(r.File.Name)
		if seen[p] {
			return fmt.Errorf("%w: duplicate secret target for %s not allowed", ErrInvalidServiceSpec, r.SecretName)
		}
		seen[p] = true
	}
	return nil
}

// checkConfigTargets refuses two configs at one file; runtime targets
// (credential specs) have none.
func checkConfigTargets(refs []*swarm.ConfigReference) error {
	seen := map[string]bool{}
	for _, r := range refs {
		if r.File == nil {
			continue
		}
		p := configPath(r.File.Name)
		if seen[p] {
			return fmt.Errorf("%w: duplicate config target for %s not allowed", ErrInvalidServiceSpec, r.ConfigName)
		}
		seen[p] = true
	}
	return nil
}

// secretLister and configLister are the API the resolution needs.
type secretLister interface {
	SecretList(ctx context.Context, f apiclient.Filters) ([]swarm.Secret, error)
}

type configLister interface {
	ConfigList(ctx context.Context, f apiclient.Filters) ([]swarm.Config, error)
}

// resolveSecrets fills in the IDs of refs (named by SecretName) as
// docker's CLI does: one GET /secrets with a "name" filter per name, the
// names then matched exactly. It returns copies, in the order given.
func resolveSecrets(ctx context.Context, api secretLister, refs []*swarm.SecretReference) ([]*swarm.SecretReference, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	f := apiclient.Filters{}
	for _, r := range refs {
		f.Add("name", r.SecretName)
	}
	found, err := api.SecretList(ctx, f)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, s := range found {
		ids[s.Spec.Name] = s.ID
	}
	out := make([]*swarm.SecretReference, 0, len(refs))
	for _, r := range refs {
		id, ok := ids[r.SecretName]
		if !ok {
			return nil, fmt.Errorf("secret not found: %s", r.SecretName)
		}
		c := *r
		if r.File != nil {
			file := *r.File
			c.File = &file
		}
		c.SecretID = id
		out = append(out, &c)
	}
	return out, nil
}

// resolveConfigs is resolveSecrets for configs.
func resolveConfigs(ctx context.Context, api configLister, refs []*swarm.ConfigReference) ([]*swarm.ConfigReference, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	f := apiclient.Filters{}
	for _, r := range refs {
		f.Add("name", r.ConfigName)
	}
	found, err := api.ConfigList(ctx, f)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, c := range found {
		ids[c.Spec.Name] = c.ID
	}
	out := make([]*swarm.ConfigReference, 0, len(refs))
	for _, r := range refs {
		id, ok := ids[r.ConfigName]
		if !ok {
			return nil, fmt.Errorf("config not found: %s", r.ConfigName)
		}
		c := *r
		if r.File != nil {
			file := *r.File
			c.File = &file
		}
		c.ConfigID = id
		out = append(out, &c)
	}
	return out, nil
}

// resolveServiceFiles resolves the names of a new spec's secrets and
// configs (service create).
func resolveServiceFiles(ctx context.Context, c *apiClient, cs *swarm.ContainerSpec) error {
	if cs == nil {
		return nil
	}
	secrets, err := resolveSecrets(ctx, c, cs.Secrets)
	if err != nil {
		return c.apiError(err)
	}
	configs, err := resolveConfigs(ctx, c, cs.Configs)
	if err != nil {
		return c.apiError(err)
	}
	cs.Secrets, cs.Configs = secrets, configs
	return nil
}

// updateServiceSecrets applies --secret-rm (by secret name, as docker's)
// then --secret-add to cur. A target taken twice is refused before any
// request; the added names are then resolved.
func updateServiceSecrets(ctx context.Context, api secretLister, cur []*swarm.SecretReference, add []*swarm.SecretReference, rm []string) ([]*swarm.SecretReference, error) {
	var kept []*swarm.SecretReference
	for _, r := range cur {
		if !containsString(rm, r.SecretName) {
			kept = append(kept, r)
		}
	}
	if err := checkSecretTargets(append(append([]*swarm.SecretReference(nil), kept...), add...)); err != nil {
		return nil, err
	}
	added, err := resolveSecrets(ctx, api, add)
	if err != nil {
		return nil, err
	}
	return append(kept, added...), nil
}

// updateServiceConfigs is updateServiceSecrets for configs; runtime
// references (credential specs) are kept unless removed by name.
func updateServiceConfigs(ctx context.Context, api configLister, cur []*swarm.ConfigReference, add []*swarm.ConfigReference, rm []string) ([]*swarm.ConfigReference, error) {
	var kept []*swarm.ConfigReference
	for _, r := range cur {
		if !containsString(rm, r.ConfigName) {
			kept = append(kept, r)
		}
	}
	if err := checkConfigTargets(append(append([]*swarm.ConfigReference(nil), kept...), add...)); err != nil {
		return nil, err
	}
	added, err := resolveConfigs(ctx, api, add)
	if err != nil {
		return nil, err
	}
	return append(kept, added...), nil
}
