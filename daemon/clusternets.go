package daemon

import (
	"context"
	"errors"
	"net/http"

	"github.com/moby/moby/api/types/network"
)

// Placeholders for the cluster's overlay networks: the overlay work
// replaces this file at merge. routes_networks.go calls these for
// `-d overlay` and merges their results into ls, inspect, rm and prune.

func (d *Daemon) clusterNetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	return network.CreateResponse{}, withStatus(http.StatusNotImplemented, errors.New("overlay networks need the cluster: not supported yet"))
}

func (d *Daemon) clusterNetworkList(ctx context.Context) ([]network.Inspect, error) { return nil, nil }

func (d *Daemon) clusterNetworkInspect(ctx context.Context, idOrName string) (network.Inspect, bool, error) {
	return network.Inspect{}, false, nil
}

func (d *Daemon) clusterNetworkRemove(ctx context.Context, idOrName string) (bool, error) {
	return false, nil
}

func (d *Daemon) clusterNetworkPrune(ctx context.Context) ([]string, error) { return nil, nil }
