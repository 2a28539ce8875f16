package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// swarmSpecJSON is a swarm spec as the daemon reads it: Docker's, with
// shoal's extension fields (the daemon's convert.Spec; the CLI imports
// nothing of the daemon). Its EncryptionConfig hides the embedded one in
// JSON, so withExtensions copies Docker's settings into it.
type swarmSpecJSON struct {
	swarm.Spec
	EncryptionConfig swarmEncryptionJSON
}

// swarmEncryptionJSON is Docker's EncryptionConfig with DataKeyRotation
// (`--data-key-rotation`); left out when zero, which keeps the current one.
type swarmEncryptionJSON struct {
	swarm.EncryptionConfig
	DataKeyRotation time.Duration `json:",omitempty"`
}

// swarmInitJSON is POST /swarm/init's body with the spec's extensions.
type swarmInitJSON struct {
	swarm.InitRequest
	Spec swarmSpecJSON
}

// withExtensions is spec with shoal's settings the flags gave.
func (o *swarmSpecFlags) withExtensions(spec swarm.Spec) swarmSpecJSON {
	return swarmSpecJSON{Spec: spec, EncryptionConfig: swarmEncryptionJSON{
		EncryptionConfig: spec.EncryptionConfig, DataKeyRotation: o.dataKeyRotation,
	}}
}

// postJSON posts body as JSON to the daemon's path and decodes its answer
// into out (when not nil). The typed client cannot carry shoal's extension
// fields, so the requests that may hold them go this way, over the same
// connection as the client's. Errors read as the client's do.
func (c *apiClient) postJSON(ctx context.Context, path string, query url.Values, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", path, err)
	}
	dial := c.Dialer()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}
	defer hc.CloseIdleConnections()
	if v := c.ClientVersion(); v != "" {
		path = "/v" + v + path // as the client sends its requests
	}
	u := url.URL{Scheme: "http", Host: "shoal", Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s request: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Message string }
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return fmt.Errorf("Error response from daemon: %s", e.Message)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode %s answer: %w", path, err)
		}
	}
	return nil
}

// swarmUpdateQuery is POST /swarm/update's query, as the typed client sends
// it.
func swarmUpdateQuery(v swarm.Version) url.Values {
	q := url.Values{}
	q.Set("version", strconv.FormatUint(v.Index, 10))
	for _, k := range []string{"rotateWorkerToken", "rotateManagerToken", "rotateManagerUnlockKey"} {
		q.Set(k, "false")
	}
	return q
}
