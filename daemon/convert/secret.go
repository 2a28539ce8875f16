package convert

import (
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

// Secrets and configs: name, labels and data. Docker's secret drivers
// (values fetched from an external store) and templating (payloads
// evaluated per task) have no counterpart in shoal and are refused.

// SecretToSwarm is a secret as Docker shows it: never with its data, which
// the control API does not return either; it is dropped here too so that no
// answer of the daemon can carry it whatever the manager sends.
func SecretToSwarm(s *api.Secret) swarm.Secret {
	return swarm.Secret{
		ID:   s.GetId(),
		Meta: MetaToSwarm(s.GetMeta()),
		Spec: swarm.SecretSpec{Annotations: annotationsToSwarm(s.GetSpec().GetAnnotations())},
	}
}

// SecretSpecFromSwarm is the spec of `secret create` (or of an update) for
// the control API, which validates name and data.
func SecretSpecFromSwarm(s swarm.SecretSpec) (*api.SecretSpec, error) {
	if s.Driver != nil {
		return nil, notSupported("secret Driver is not supported: secrets are stored in the swarm")
	}
	if s.Templating != nil {
		return nil, notSupported("secret Templating is not supported")
	}
	return &api.SecretSpec{Annotations: annotationsToAPI(s.Annotations), Data: copyBytes(s.Data)}, nil
}

// ConfigToSwarm is a config as Docker shows it, with its data: configs
// are not sensitive, and dockerd returns their data too.
func ConfigToSwarm(c *api.Config) swarm.Config {
	return swarm.Config{
		ID:   c.GetId(),
		Meta: MetaToSwarm(c.GetMeta()),
		Spec: swarm.ConfigSpec{
			Annotations: annotationsToSwarm(c.GetSpec().GetAnnotations()),
			Data:        copyBytes(c.GetSpec().GetData()),
		},
	}
}

// ConfigSpecFromSwarm is the spec of `config create` (or of an update) for
// the control API, which validates name and data.
func ConfigSpecFromSwarm(s swarm.ConfigSpec) (*api.ConfigSpec, error) {
	if s.Templating != nil {
		return nil, notSupported("config Templating is not supported")
	}
	return &api.ConfigSpec{Annotations: annotationsToAPI(s.Annotations), Data: copyBytes(s.Data)}, nil
}

// copyBytes is nil for empty data: JSON then omits it, as Docker's
// omitempty does for a nil slice only.
func copyBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// SecretFilters are the filters of GET /secrets and GET /configs, as
// dockerd's (daemon/cluster/filters.go): `id` (ID prefix), `names` (exact
// name), `label` (key or key=value) go to the control API; `name` (name
// prefix, which the control API cannot match) is checked by Match.
type SecretFilters struct {
	IDPrefixes   []string
	Names        []string
	Labels       map[string]string
	NamePrefixes []string
}

// SecretListFilters reads Docker's secret and config filters: id, name,
// names, label.
func SecretListFilters(f map[string][]string) (*SecretFilters, error) {
	if err := checkKeys(f, "id", "name", "names", "label"); err != nil {
		return nil, err
	}
	return &SecretFilters{
		IDPrefixes:   copyStrings(f["id"]),
		Names:        copyStrings(f["names"]),
		Labels:       labelMap(f["label"]),
		NamePrefixes: copyStrings(f["name"]),
	}, nil
}

// SecretRequest is the part of f ListSecrets matches.
func (f *SecretFilters) SecretRequest() *api.ListSecretsRequest_Filters {
	return &api.ListSecretsRequest_Filters{Names: f.Names, IdPrefixes: f.IDPrefixes, Labels: f.Labels}
}

// ConfigRequest is the part of f ListConfigs matches.
func (f *SecretFilters) ConfigRequest() *api.ListConfigsRequest_Filters {
	return &api.ListConfigsRequest_Filters{Names: f.Names, IdPrefixes: f.IDPrefixes, Labels: f.Labels}
}

// Match reports whether an object named name passes the `name` filter.
func (f *SecretFilters) Match(name string) bool {
	return f == nil || len(f.NamePrefixes) == 0 || hasPrefix(name, f.NamePrefixes)
}
