package controlapi

import (
	"bytes"
	"context"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

func getConfig(tx raftstore.ReadTx, ref string) (*api.Config, error) {
	o, err := resolve(tx, raftstore.KindConfig, "config", ref, specName)
	if err != nil {
		return nil, err
	}
	return o.(*api.Config), nil
}

// GetConfig returns a config with its data.
func (s *Server) GetConfig(ctx context.Context, req *api.GetConfigRequest) (*api.GetConfigResponse, error) {
	var cfg *api.Config
	var err error
	s.store.View(func(tx raftstore.ReadTx) { cfg, err = getConfig(tx, req.GetConfigId()) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetConfigResponse{Config: cfg}, nil
}

// ListConfigs returns the configs matching every filter.
func (s *Server) ListConfigs(ctx context.Context, req *api.ListConfigsRequest) (*api.ListConfigsResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes(), labels: f.GetLabels()}
	keep := func(cfg *api.Config) bool {
		a := cfg.GetSpec().GetAnnotations()
		return flt.match(cfg.GetId(), []string{a.GetName()}, a.GetLabels())
	}
	resp := &api.ListConfigsResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		resp.Configs, resp.NextPageToken = listPage(shared[*api.Config](tx, raftstore.KindConfig), keep, req.GetPageToken(), req.GetPageSize())
	})
	return resp, nil
}

// CreateConfig stores a config.
func (s *Server) CreateConfig(ctx context.Context, req *api.CreateConfigRequest) (*api.CreateConfigResponse, error) {
	spec := req.GetSpec()
	name := spec.GetAnnotations().GetName()
	if err := validateData("config", name, spec.GetData()); err != nil {
		return nil, api.ToGRPC(err)
	}
	cfg := &api.Config{Id: s.newID(), Spec: proto.Clone(spec).(*api.ConfigSpec)}
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		if tx.GetByName(raftstore.KindConfig, name) != nil {
			return conflict("config %s already exists", name)
		}
		return tx.Create(cfg)
	})
	if err != nil {
		return nil, api.ToGRPC(uniqueNameRace(err, "config", name))
	}
	var out *api.Config
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetConfig(cfg.Id) })
	if out == nil {
		return nil, api.ToGRPC(notFound("config %s not found", name))
	}
	return &api.CreateConfigResponse{Config: out}, nil
}

// UpdateConfig changes a config's labels; its name and data are immutable
// (an empty data in the request means "unchanged").
func (s *Server) UpdateConfig(ctx context.Context, req *api.UpdateConfigRequest) (*api.UpdateConfigResponse, error) {
	if req.GetSpec() == nil {
		return nil, api.ToGRPC(invalid("config spec is required"))
	}
	var id string
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		cfg, err := getConfig(tx, req.GetConfigId())
		if err != nil {
			return err
		}
		id = cfg.GetId()
		name := cfg.GetSpec().GetAnnotations().GetName()
		if v := cfg.GetMeta().GetVersion(); req.GetConfigVersion() != v {
			return conflict("config %s: update out of sequence (version %d, current %d)", name, req.GetConfigVersion(), v)
		}
		if n := req.GetSpec().GetAnnotations().GetName(); n != name {
			return invalid("config %s: only labels can be updated, not the name", name)
		}
		if d := req.GetSpec().GetData(); len(d) > 0 && !bytes.Equal(d, cfg.GetSpec().GetData()) {
			return invalid("config %s: only labels can be updated, not the data: create a new config", name)
		}
		cfg.Spec.Annotations.Labels = req.GetSpec().GetAnnotations().GetLabels()
		return tx.Update(cfg)
	})
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	var out *api.Config
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetConfig(id) })
	if out == nil {
		return nil, api.ToGRPC(notFound("config %s not found", req.GetConfigId()))
	}
	return &api.UpdateConfigResponse{Config: out}, nil
}

// RemoveConfig deletes a config no service uses.
func (s *Server) RemoveConfig(ctx context.Context, req *api.RemoveConfigRequest) (*api.RemoveConfigResponse, error) {
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		cfg, err := getConfig(tx, req.GetConfigId())
		if err != nil {
			return err
		}
		if svc := inUse(tx, cfg.GetId()); svc != "" {
			return precondition("config %s is in use by service %s", cfg.GetSpec().GetAnnotations().GetName(), svc)
		}
		return tx.Delete(raftstore.KindConfig, cfg.GetId())
	})
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.RemoveConfigResponse{}, nil
}
