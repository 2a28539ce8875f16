package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// TestSecretAndConfigEndpoints: each method's request (method, path,
// query, body) and how its answer is read.
func TestSecretAndConfigEndpoints(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	answers := map[string]struct {
		code int
		body string
	}{
		"GET /secrets":             {200, `[{"ID":"s1","Version":{"Index":3},"Spec":{"Name":"db_pw","Labels":{"a":"1"}}}]`},
		"POST /secrets/create":     {201, `{"ID":"s2"}`},
		"GET /secrets/db_pw":       {200, `{"ID":"s1","Version":{"Index":3},"CreatedAt":"2026-01-02T03:04:05Z","Spec":{"Name":"db_pw"}}`},
		"POST /secrets/s1/update":  {200, ``},
		"DELETE /secrets/s1":       {204, ``},
		"GET /configs":             {200, `[{"ID":"c1","Spec":{"Name":"nginx","Data":"aGVsbG8="}}]`},
		"POST /configs/create":     {201, `{"ID":"c2"}`},
		"GET /configs/nginx":       {200, `{"ID":"c1","Version":{"Index":9},"Spec":{"Name":"nginx","Data":"aGVsbG8="}}`},
		"POST /configs/c1/update":  {200, ``},
		"DELETE /configs/c1":       {204, ``},
		"DELETE /secrets/nosuch":   {404, `{"message":"secret nosuch not found"}`},
		"GET /configs/nosuch-conf": {404, `{"message":"config nosuch-conf not found"}`},
	}
	c, seen := swarmTestDaemon(t, func(r *http.Request) (int, string) {
		a, ok := answers[r.Method+" "+strings.TrimPrefix(r.URL.Path, "/v"+APIVersion)]
		if !ok {
			return 500, `{"message":"unexpected request"}`
		}
		return a.code, a.body
	})
	ctx := context.Background()

	secrets, err := c.SecretList(ctx, Filters{}.Add("name", "db"))
	if err != nil || len(secrets) != 1 || secrets[0].ID != "s1" || secrets[0].Spec.Labels["a"] != "1" {
		t.Fatalf("SecretList: %+v, %v", secrets, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/secrets", url.Values{"filters": {`{"name":{"db":true}}`}})
	if _, err := c.SecretList(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/secrets", nil)

	id, err := c.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "k", Labels: map[string]string{}}, Data: []byte("hi")})
	if err != nil || id != "s2" {
		t.Fatalf("SecretCreate: %q, %v", id, err)
	}
	s := lastSeen(t, seen)
	checkSeen(t, s, "POST", "/secrets/create", nil)
	checkBody(t, s, `{"Name":"k","Labels":{},"Data":"aGk="}`)

	sec, raw, err := c.SecretInspect(ctx, "db_pw")
	if err != nil || sec.ID != "s1" || sec.Version.Index != 3 || !sec.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		!strings.Contains(string(raw), `"CreatedAt":"2026-01-02T03:04:05Z"`) {
		t.Fatalf("SecretInspect: %+v %s %v", sec, raw, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/secrets/db_pw", nil)

	if err := c.SecretUpdate(ctx, "s1", swarm.Version{Index: 3}, swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pw", Labels: map[string]string{"b": "2"}}}); err != nil {
		t.Fatal(err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/secrets/s1/update", url.Values{"version": {"3"}})
	checkBody(t, s, `{"Name":"db_pw","Labels":{"b":"2"}}`)

	if err := c.SecretRemove(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "DELETE", "/secrets/s1", nil)
	err = c.SecretRemove(ctx, "nosuch")
	if !IsNotFound(err) || err.Error() != "Error response from daemon: secret nosuch not found" {
		t.Fatalf("SecretRemove of a missing secret: %v", err)
	}
	lastSeen(t, seen)

	configs, err := c.ConfigList(ctx, Filters{}.Add("label", "x=y"))
	if err != nil || len(configs) != 1 || string(configs[0].Spec.Data) != "hello" {
		t.Fatalf("ConfigList: %+v, %v", configs, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/configs", url.Values{"filters": {`{"label":{"x=y":true}}`}})

	id, err = c.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "nginx"}, Data: []byte("hello")})
	if err != nil || id != "c2" {
		t.Fatalf("ConfigCreate: %q, %v", id, err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/configs/create", nil)
	checkBody(t, s, `{"Name":"nginx","Labels":null,"Data":"aGVsbG8="}`)

	cfg, _, err := c.ConfigInspect(ctx, "nginx")
	if err != nil || cfg.ID != "c1" || string(cfg.Spec.Data) != "hello" || cfg.Version.Index != 9 {
		t.Fatalf("ConfigInspect: %+v %v", cfg, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/configs/nginx", nil)
	if _, _, err := c.ConfigInspect(ctx, "nosuch-conf"); !IsNotFound(err) {
		t.Fatalf("ConfigInspect of a missing config: %v", err)
	}
	lastSeen(t, seen)

	if err := c.ConfigUpdate(ctx, "c1", swarm.Version{Index: 9}, cfg.Spec); err != nil {
		t.Fatal(err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/configs/c1/update", url.Values{"version": {"9"}})
	checkBody(t, s, `{"Name":"nginx","Labels":null,"Data":"aGVsbG8="}`)

	if err := c.ConfigRemove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "DELETE", "/configs/c1", nil)

	// An empty name would name the collection: refused before any request.
	for name, call := range map[string]func() error{
		"SecretInspect": func() error { _, _, err := c.SecretInspect(ctx, " "); return err },
		"SecretRemove":  func() error { return c.SecretRemove(ctx, "") },
		"SecretUpdate":  func() error { return c.SecretUpdate(ctx, "", swarm.Version{}, swarm.SecretSpec{}) },
		"ConfigInspect": func() error { _, _, err := c.ConfigInspect(ctx, ""); return err },
		"ConfigRemove":  func() error { return c.ConfigRemove(ctx, "") },
		"ConfigUpdate":  func() error { return c.ConfigUpdate(ctx, "", swarm.Version{}, swarm.ConfigSpec{}) },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "value is empty") {
			t.Errorf("%s with an empty ID: %v", name, err)
		}
	}
	if n := seen.count(); n != 0 {
		t.Errorf("%d requests sent for empty IDs", n)
	}
}
