package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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

// swarmID is the ID or name of a swarm object (service, node, task) for a
// request path: without surrounding blanks, and not empty (the moby client
// refuses an empty one before sending anything, with this text).
func swarmID(kind, id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", fmt.Errorf("invalid %s name or ID: value is empty", kind)
	}
	return esc(id), nil
}

// swarmGetRaw is GET p?q decoded into out, with the answer's JSON as the
// daemon sent it (inspect --format '{{json .}}' and --pretty read fields
// that the API types lack).
func (c *Client) swarmGetRaw(ctx context.Context, p string, q url.Values, out any) ([]byte, error) {
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: p, Query: q})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer of GET %s: %w", p, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode answer of GET %s: %w", p, err)
	}
	return raw, nil
}
