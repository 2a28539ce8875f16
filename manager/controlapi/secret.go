package controlapi

import (
	"bytes"
	"context"
	"regexp"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// maxDataBytes is Swarm's limit on a secret's or config's data: it lives in
// every manager's memory and raft log.
const maxDataBytes = 500 * 1024

// validDataName is Swarm's rule for secret and config names: dots are
// allowed (server.conf, app.crt), unlike in service names, which are DNS
// labels.
var validDataName = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)

func validateData(what, name string, data []byte) error {
	switch {
	case name == "":
		return invalid("%s name is required", what)
	case len(name) > 64:
		return invalid("%s name %q is longer than 64 characters", what, name)
	case !validDataName.MatchString(name):
		return invalid("%s name %q is invalid: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", what, name)
	}
	if len(data) == 0 {
		return invalid("%s %s: data is required", what, name)
	}
	if len(data) > maxDataBytes {
		return invalid("%s %s: data is %d bytes, over the limit of %d", what, name, len(data), maxDataBytes)
	}
	return nil
}

// inUse names a service whose tasks refer to the secret or config id, or "".
func inUse(tx raftstore.ReadTx, id string) string {
	for _, svc := range tx.Services() {
		c := svc.GetSpec().GetTask().GetContainer()
		for _, r := range c.GetSecrets() {
			if r.GetSecretId() == id {
				return svc.GetSpec().GetAnnotations().GetName()
			}
		}
		for _, r := range c.GetConfigs() {
			if r.GetConfigId() == id {
				return svc.GetSpec().GetAnnotations().GetName()
			}
		}
	}
	return ""
}

// withoutData is the secret as clients see it: its data never leaves the
// managers except towards the agents whose tasks use it.
func withoutData(s *api.Secret) *api.Secret {
	if s.GetSpec() != nil {
		s.Spec.Data = nil
	}
	return s
}

func getSecret(tx raftstore.ReadTx, ref string) (*api.Secret, error) {
	o, err := resolve(tx, raftstore.KindSecret, "secret", ref, specName)
	if err != nil {
		return nil, err
	}
	return o.(*api.Secret), nil
}

// GetSecret returns a secret, without its data.
func (s *Server) GetSecret(ctx context.Context, req *api.GetSecretRequest) (*api.GetSecretResponse, error) {
	var sec *api.Secret
	var err error
	s.store.View(func(tx raftstore.ReadTx) { sec, err = getSecret(tx, req.GetSecretId()) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetSecretResponse{Secret: withoutData(sec)}, nil
}

// ListSecrets returns the secrets matching every filter, without data.
func (s *Server) ListSecrets(ctx context.Context, req *api.ListSecretsRequest) (*api.ListSecretsResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes(), labels: f.GetLabels()}
	resp := &api.ListSecretsResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		for _, sec := range tx.Secrets() {
			a := sec.GetSpec().GetAnnotations()
			if flt.match(sec.GetId(), []string{a.GetName()}, a.GetLabels()) {
				resp.Secrets = append(resp.Secrets, withoutData(sec))
			}
		}
	})
	return resp, nil
}

// CreateSecret stores a secret.
func (s *Server) CreateSecret(ctx context.Context, req *api.CreateSecretRequest) (*api.CreateSecretResponse, error) {
	spec := req.GetSpec()
	name := spec.GetAnnotations().GetName()
	if err := validateData("secret", name, spec.GetData()); err != nil {
		return nil, api.ToGRPC(err)
	}
	sec := &api.Secret{Id: s.newID(), Spec: proto.Clone(spec).(*api.SecretSpec)}
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		if tx.GetByName(raftstore.KindSecret, name) != nil {
			return conflict("secret %s already exists", name)
		}
		return tx.Create(sec)
	})
	if err != nil {
		return nil, api.ToGRPC(uniqueNameRace(err, "secret", name))
	}
	var out *api.Secret
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetSecret(sec.Id) })
	if out == nil {
		return nil, api.ToGRPC(notFound("secret %s not found", name))
	}
	return &api.CreateSecretResponse{Secret: withoutData(out)}, nil
}

// UpdateSecret changes a secret's labels; its name and data are immutable
// (an empty data in the request means "unchanged").
func (s *Server) UpdateSecret(ctx context.Context, req *api.UpdateSecretRequest) (*api.UpdateSecretResponse, error) {
	if req.GetSpec() == nil {
		return nil, api.ToGRPC(invalid("secret spec is required"))
	}
	var id string
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		sec, err := getSecret(tx, req.GetSecretId())
		if err != nil {
			return err
		}
		id = sec.GetId()
		name := sec.GetSpec().GetAnnotations().GetName()
		if v := sec.GetMeta().GetVersion(); req.GetSecretVersion() != v {
			return conflict("secret %s: update out of sequence (version %d, current %d)", name, req.GetSecretVersion(), v)
		}
		if n := req.GetSpec().GetAnnotations().GetName(); n != name {
			return invalid("secret %s: only labels can be updated, not the name", name)
		}
		if d := req.GetSpec().GetData(); len(d) > 0 && !bytes.Equal(d, sec.GetSpec().GetData()) {
			return invalid("secret %s: only labels can be updated, not the data: create a new secret", name)
		}
		sec.Spec.Annotations.Labels = req.GetSpec().GetAnnotations().GetLabels()
		return tx.Update(sec)
	})
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	var out *api.Secret
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetSecret(id) })
	if out == nil {
		return nil, api.ToGRPC(notFound("secret %s not found", req.GetSecretId()))
	}
	return &api.UpdateSecretResponse{Secret: withoutData(out)}, nil
}

// RemoveSecret deletes a secret no service uses.
func (s *Server) RemoveSecret(ctx context.Context, req *api.RemoveSecretRequest) (*api.RemoveSecretResponse, error) {
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		sec, err := getSecret(tx, req.GetSecretId())
		if err != nil {
			return err
		}
		if svc := inUse(tx, sec.GetId()); svc != "" {
			return precondition("secret %s is in use by service %s", sec.GetSpec().GetAnnotations().GetName(), svc)
		}
		return tx.Delete(raftstore.KindSecret, sec.GetId())
	})
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.RemoveSecretResponse{}, nil
}
