package daemon

import (
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/registry"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/daemon/convert"
)

// TestWithRegistryAuth: --with-registry-auth's header is stored in the
// task spec for the workers, kept by an update that sends none, refused
// when it is not credentials, and never shown by service inspect.
func TestWithRegistryAuth(t *testing.T) {
	b, _ := json.Marshal(registry.AuthConfig{Username: "u", Password: "secret-pw"})
	auth := base64.URLEncoding.EncodeToString(b)
	spec := func() *api.ServiceSpec {
		return &api.ServiceSpec{Annotations: &api.Annotations{Name: "s"}, Task: &api.TaskSpec{Container: &api.ContainerSpec{Image: "x"}}}
	}
	req := httptest.NewRequest("POST", "/services/create", nil)
	req.Header.Set(registry.AuthHeader, auth)
	created := spec()
	if err := withRegistryAuth(req, created, nil); err != nil {
		t.Fatal(err)
	}
	if got := created.GetTask().GetContainer().GetRegistryAuth(); got != auth {
		t.Fatalf("stored %q, want the header", got)
	}
	shown, _ := json.Marshal(convert.ServiceToSwarm(&api.Service{Id: "x", Spec: created}))
	if strings.Contains(string(shown), auth) || strings.Contains(string(shown), "secret-pw") {
		t.Fatalf("service inspect shows the credentials: %s", shown)
	}

	updated := spec()
	if err := withRegistryAuth(httptest.NewRequest("POST", "/services/x/update", nil), updated, created); err != nil {
		t.Fatal(err)
	}
	if got := updated.GetTask().GetContainer().GetRegistryAuth(); got != auth {
		t.Fatalf("an update without credentials left %q, want the previous ones", got)
	}

	bad := httptest.NewRequest("POST", "/services/create", nil)
	bad.Header.Set(registry.AuthHeader, "%%%")
	if err := withRegistryAuth(bad, spec(), nil); err == nil || statusOf(err) != 400 {
		t.Fatalf("a malformed X-Registry-Auth: %v", err)
	}
}
