// Package distribution pulls images from and pushes them to any registry
// that speaks the OCI distribution API or Docker's registry v2, over plain
// net/http: the bearer-token challenge and basic auth, OCI and Docker
// manifests and indexes, gzip and zstd layers, digests checked while the
// bytes stream in.
//
// A pull downloads each layer (3 at a time, as dockerd) into an ingest
// directory of its own, checks its digest, and only then unpacks it into
// the image store, which pins finished layers until the image is
// registered: a pull that fails leaves nothing, and one cut short by a
// crash finds its finished layers again.
package distribution

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/containerd/images"
)

// DockerHub is the registry of references without a domain.
const DockerHub = "registry-1.docker.io"

// Auth holds the credentials for one registry, as docker's X-Registry-Auth
// carries them.
type Auth struct {
	Username      string
	Password      string
	IdentityToken string
	RegistryToken string
}

// Options configure a Client.
type Options struct {
	// Insecure lists the registries (host[:port]) reached over plain HTTP or
	// TLS without verification. localhost and 127.0.0.0/8 always are.
	Insecure []string
	// Root is the client's directory: ingest/ holds partial downloads (emptied
	// by New), layers.json what registries are known to hold of each layer.
	Root string
	// Platform is the node's platform (os/arch[/variant]) picked from indexes.
	Platform string
	// TLS, if set, replaces the system's TLS settings for verified
	// registries: the cluster registry's client presents the node
	// certificate and trusts the cluster CA.
	TLS *tls.Config
}

// Client pulls and pushes images of one image store.
type Client struct {
	store    *images.Store
	opts     Options
	secure   *http.Client
	insecure *http.Client // no TLS verification; also for plain HTTP
	meta     *layerMeta
}

// New makes a client over store.
func New(store *images.Store, opts Options) (*Client, error) {
	if err := resetDir(ingestDir(opts.Root)); err != nil {
		return nil, fmt.Errorf("distribution: %w", err)
	}
	meta, err := openLayerMeta(filepath.Join(opts.Root, "layers.json"))
	if err != nil {
		return nil, err
	}
	mk := func(skipVerify bool) *http.Client {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: skipVerify} //nolint:gosec // only for --insecure-registry hosts
		if !skipVerify && opts.TLS != nil {
			tr.TLSClientConfig = opts.TLS.Clone()
		}
		tr.ResponseHeaderTimeout = 60 * time.Second
		return &http.Client{Transport: tr}
	}
	return &Client{store: store, opts: opts, secure: mk(false), insecure: mk(true), meta: meta}, nil
}

// isInsecure tells whether host may be reached without verified TLS.
func (c *Client) isInsecure(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, i := range c.opts.Insecure {
		if i == host || i == h {
			return true
		}
	}
	return false
}

// registryHost maps a reference's domain to the host to talk to.
func registryHost(domain string) string {
	if domain == "" || domain == "docker.io" || domain == "index.docker.io" {
		return DockerHub
	}
	return domain
}

// remotePath is the repository path on the registry (library/ for Hub).
func remotePath(ref images.Reference) string {
	if ref.Domain == "" && !strings.Contains(ref.Path, "/") {
		return "library/" + ref.Path
	}
	return ref.Path
}

// session talks to one repository of one registry with one set of
// credentials; it answers auth challenges once and reuses the result.
type session struct {
	c      *Client
	hc     *http.Client
	base   string // scheme://host
	host   string
	repo   string
	auth   Auth
	push   bool
	mu     sync.Mutex
	header string // Authorization value, once known
}

// open pings the registry (/v2/), picks the scheme and answers its auth
// challenge for repo.
func (c *Client) open(ctx context.Context, host, repo string, auth Auth, push bool) (*session, error) {
	s := &session{c: c, host: host, repo: repo, auth: auth, push: push}
	type try struct {
		scheme string
		hc     *http.Client
	}
	tries := []try{{"https", c.secure}}
	if c.isInsecure(host) {
		tries = []try{{"https", c.insecure}, {"http", c.insecure}}
	}
	var firstErr error
	for _, t := range tries {
		s.base, s.hc = t.scheme+"://"+host, t.hc
		resp, err := s.do(ctx, http.MethodGet, s.base+"/v2/", nil, nil)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			if err := s.authorize(ctx, resp.Header.Get("WWW-Authenticate")); err != nil {
				return nil, err
			}
			return s, nil
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("registry %s: GET /v2/: unexpected status %s (not a registry?)", host, resp.Status)
		}
		return s, nil
	}
	return nil, fmt.Errorf("registry %s: %w", host, firstErr)
}

// authorize answers a WWW-Authenticate challenge: Basic with the
// credentials, Bearer with a token from the realm for the repository scope.
func (s *session) authorize(ctx context.Context, challenge string) error {
	scheme, params := parseChallenge(challenge)
	switch strings.ToLower(scheme) {
	case "basic":
		if s.auth.Username == "" {
			return fmt.Errorf("registry %s: authentication required (shoal login %s)", s.host, s.host)
		}
		s.setHeader("Basic " + base64.StdEncoding.EncodeToString([]byte(s.auth.Username+":"+s.auth.Password)))
	case "bearer":
		if s.auth.RegistryToken != "" {
			s.setHeader("Bearer " + s.auth.RegistryToken)
			break
		}
		tok, err := s.fetchToken(ctx, params)
		if err != nil {
			return err
		}
		s.setHeader("Bearer " + tok)
	default:
		return fmt.Errorf("registry %s: unsupported auth challenge %q", s.host, challenge)
	}
	// Check the credentials now, so that a wrong password is one clear error.
	resp, err := s.do(ctx, http.MethodGet, s.base+"/v2/", nil, nil)
	if err != nil {
		return fmt.Errorf("registry %s: %w", s.host, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && strings.EqualFold(scheme, "basic") {
		return fmt.Errorf("registry %s: unauthorized: incorrect username or password", s.host)
	}
	return nil
}

func (s *session) setHeader(h string) {
	s.mu.Lock()
	s.header = h
	s.mu.Unlock()
}

// fetchToken gets a bearer token from the challenge's realm.
func (s *session) fetchToken(ctx context.Context, params map[string]string) (string, error) {
	realm := params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("registry %s: bad token realm %q", s.host, realm)
	}
	q := u.Query()
	if svc := params["service"]; svc != "" {
		q.Set("service", svc)
	}
	actions := "pull"
	if s.push {
		actions = "pull,push"
	}
	if s.repo != "" {
		q.Set("scope", "repository:"+s.repo+":"+actions)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if s.auth.Username != "" {
		req.SetBasicAuth(s.auth.Username, s.auth.Password)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("registry %s: token: %w", s.host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", fmt.Errorf("registry %s: unauthorized: incorrect username or password", s.host)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registry %s: token: unexpected status %s", s.host, resp.Status)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil {
		return "", fmt.Errorf("registry %s: token: bad answer: %w", s.host, err)
	}
	if tr.Token == "" {
		tr.Token = tr.AccessToken
	}
	if tr.Token == "" {
		return "", fmt.Errorf("registry %s: token: empty token", s.host)
	}
	return tr.Token, nil
}

// parseChallenge splits `Bearer realm="x",service="y"` into scheme and params.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(v, `"`) {
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				params[k] = v[1:]
				break
			}
			params[k], rest = v[1:end+1], v[end+2:]
		} else {
			val, r, _ := strings.Cut(v, ",")
			params[k], rest = val, r
		}
		rest = strings.TrimPrefix(strings.TrimSpace(rest), ",")
	}
	return scheme, params
}

// do sends one request with the session's credentials (learnt before any
// request with a body, so that no body is ever sent twice).
func (s *session) do(ctx context.Context, method, u string, hdr http.Header, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	s.mu.Lock()
	h := s.header
	s.mu.Unlock()
	// Credentials go to the registry's own host only: an upload Location
	// or a redirect may name another (a CDN, storage, or a hostile host).
	if h != "" && req.URL.Host == s.host {
		req.Header.Set("Authorization", h)
	}
	req.Header.Set("User-Agent", "shoal")
	return s.hc.Do(req)
}

// call is do with auth and a check of the status against want; a wrong
// status is turned into an error naming the registry's own message.
func (s *session) call(ctx context.Context, method, u string, hdr http.Header, body io.Reader, want ...int) (*http.Response, error) {
	resp, err := s.do(ctx, method, u, hdr, body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && body == nil {
		// A token expired during a long pull or push: answer the challenge again, once.
		resp.Body.Close()
		if err := s.authorize(ctx, resp.Header.Get("WWW-Authenticate")); err != nil {
			return nil, err
		}
		if resp, err = s.do(ctx, method, u, hdr, nil); err != nil {
			return nil, err
		}
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, statusError(resp)
}

// statusError reads a registry error answer ({"errors":[{code,message}]}).
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &e) == nil && len(e.Errors) > 0 {
		var parts []string
		for _, x := range e.Errors {
			parts = append(parts, strings.ToLower(strings.ReplaceAll(x.Code, "_", " "))+": "+x.Message)
		}
		return &httpError{status: resp.StatusCode, msg: strings.Join(parts, "; ")}
	}
	return &httpError{status: resp.StatusCode, msg: resp.Status}
}

type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func isStatus(err error, code int) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == code
}

// resolveURL makes a Location header absolute.
func (s *session) resolveURL(loc string) (string, error) {
	base, _ := url.Parse(s.base + "/")
	u, err := base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("registry %s: bad upload location %q", s.host, loc)
	}
	return u.String(), nil
}

// Login checks auth against server (a host[:port], or Docker Hub when empty).
func (c *Client) Login(ctx context.Context, server string, auth Auth) error {
	host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"), "/")
	host = registryHost(strings.TrimSuffix(host, "/v1"))
	_, err := c.open(ctx, host, "", auth, false)
	return err
}
