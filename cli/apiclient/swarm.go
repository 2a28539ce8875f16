package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/moby/moby/api/types/swarm"
)

// SwarmInspect is GET /swarm.
func (c *Client) SwarmInspect(ctx context.Context) (swarm.Swarm, error) {
	var sw swarm.Swarm
	err := c.get(ctx, "/swarm", nil, &sw)
	return sw, err
}

// SwarmInit is POST /swarm/init and returns the new node's ID. req is a
// swarm.InitRequest, or a type that embeds one with fields of the daemon's
// own (shoal's spec extensions): it is sent as JSON as it is.
func (c *Client) SwarmInit(ctx context.Context, req any) (string, error) {
	var nodeID string
	err := c.post(ctx, "/swarm/init", nil, req, &nodeID)
	return nodeID, err
}

// SwarmJoin is POST /swarm/join.
func (c *Client) SwarmJoin(ctx context.Context, req swarm.JoinRequest) error {
	return c.post(ctx, "/swarm/join", nil, req, nil)
}

// SwarmLeave is POST /swarm/leave; force leaves even a manager whose
// leaving breaks the quorum.
func (c *Client) SwarmLeave(ctx context.Context, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.post(ctx, "/swarm/leave", q, nil, nil)
}

// SwarmRotate are the rotations a swarm update asks for.
type SwarmRotate struct {
	WorkerToken, ManagerToken, ManagerUnlockKey bool
}

// SwarmUpdate is POST /swarm/update of the swarm at version (the one read
// with SwarmInspect). spec is a swarm.Spec, or a type that embeds one with
// fields of the daemon's own (shoal's spec extensions): it is sent as JSON
// as it is. The three rotation flags are always sent, true or false.
func (c *Client) SwarmUpdate(ctx context.Context, version swarm.Version, spec any, rotate SwarmRotate) error {
	q := url.Values{}
	q.Set("version", strconv.FormatUint(version.Index, 10))
	q.Set("rotateWorkerToken", strconv.FormatBool(rotate.WorkerToken))
	q.Set("rotateManagerToken", strconv.FormatBool(rotate.ManagerToken))
	q.Set("rotateManagerUnlockKey", strconv.FormatBool(rotate.ManagerUnlockKey))
	return c.post(ctx, "/swarm/update", q, spec, nil)
}

// SwarmGetUnlockKey is GET /swarm/unlockkey: the key ("" when autolock is
// off).
func (c *Client) SwarmGetUnlockKey(ctx context.Context) (string, error) {
	var r swarm.UnlockKeyResponse
	err := c.get(ctx, "/swarm/unlockkey", nil, &r)
	return r.UnlockKey, err
}

// SwarmUnlock is POST /swarm/unlock.
func (c *Client) SwarmUnlock(ctx context.Context, key string) error {
	return c.post(ctx, "/swarm/unlock", nil, swarm.UnlockRequest{UnlockKey: key}, nil)
}
