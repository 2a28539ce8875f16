package convert

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	secretCreated = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	secretUpdated = secretCreated.Add(time.Hour)
	secretMeta    = &api.Meta{Version: 7, CreatedAt: timestamppb.New(secretCreated), UpdatedAt: timestamppb.New(secretUpdated)}
)

func TestSecretToSwarm(t *testing.T) {
	s := &api.Secret{Id: "sec1", Meta: secretMeta, Spec: &api.SecretSpec{
		Annotations: &api.Annotations{Name: "pw", Labels: map[string]string{"a": "b"}},
		Data:        []byte("s3cret"), // never shown, even if a manager sent it
	}}
	jsonEqual(t, "secret", SecretToSwarm(s), swarm.Secret{
		ID:   "sec1",
		Meta: swarm.Meta{Version: swarm.Version{Index: 7}, CreatedAt: secretCreated, UpdatedAt: secretUpdated},
		Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "pw", Labels: map[string]string{"a": "b"}}},
	})
	// No labels read back as {} (dockerd's answer), unset times as zero.
	jsonEqual(t, "bare secret", SecretToSwarm(&api.Secret{Id: "x", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "n"}}}),
		swarm.Secret{ID: "x", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "n", Labels: map[string]string{}}}})
}

func TestConfigToSwarm(t *testing.T) {
	c := &api.Config{Id: "cfg1", Meta: secretMeta, Spec: &api.ConfigSpec{
		Annotations: &api.Annotations{Name: "app.conf"},
		Data:        []byte("port=80\n"),
	}}
	got := ConfigToSwarm(c)
	jsonEqual(t, "config", got, swarm.Config{
		ID:   "cfg1",
		Meta: swarm.Meta{Version: swarm.Version{Index: 7}, CreatedAt: secretCreated, UpdatedAt: secretUpdated},
		Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "app.conf", Labels: map[string]string{}}, Data: []byte("port=80\n")},
	})
	// The answer has its own copy of the data.
	got.Spec.Data[0] = 'X'
	if string(c.Spec.Data) != "port=80\n" {
		t.Errorf("ConfigToSwarm shares the object's data: %q", c.Spec.Data)
	}
}

func TestSecretSpecFromSwarm(t *testing.T) {
	got, err := SecretSpecFromSwarm(swarm.SecretSpec{Annotations: swarm.Annotations{Name: "pw", Labels: map[string]string{"k": "v"}}, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetAnnotations().GetName() != "pw" || got.GetAnnotations().GetLabels()["k"] != "v" || string(got.GetData()) != "x" {
		t.Errorf("spec = %v", got)
	}
	cfg, err := ConfigSpecFromSwarm(swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "c", Labels: map[string]string{}}, Data: []byte("y")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GetAnnotations().GetName() != "c" || len(cfg.GetAnnotations().GetLabels()) != 0 || string(cfg.GetData()) != "y" {
		t.Errorf("config spec = %v", cfg)
	}
}

// Drivers and templating are refused, naming the field, never dropped.
func TestSecretSpecRefused(t *testing.T) {
	drv := &swarm.Driver{Name: "vault"}
	for _, tc := range []struct {
		name  string
		err   error
		field string
	}{
		{"secret driver", second(SecretSpecFromSwarm(swarm.SecretSpec{Annotations: swarm.Annotations{Name: "s"}, Driver: drv})), "Driver"},
		{"secret driver without data", second(SecretSpecFromSwarm(swarm.SecretSpec{Annotations: swarm.Annotations{Name: "s"}, Driver: &swarm.Driver{}})), "Driver"},
		{"secret templating", second(SecretSpecFromSwarm(swarm.SecretSpec{Annotations: swarm.Annotations{Name: "s"}, Data: []byte("x"), Templating: drv})), "Templating"},
		{"config templating", second(ConfigSpecFromSwarm(swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "c"}, Data: []byte("x"), Templating: drv})), "Templating"},
	} {
		if tc.err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !errors.Is(tc.err, api.ErrInvalidArgument) || !errors.Is(tc.err, ErrUnsupported) || !strings.Contains(tc.err.Error(), tc.field) {
			t.Errorf("%s: %v (want a 400, unsupported, naming %s)", tc.name, tc.err, tc.field)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestSecretListFilters(t *testing.T) {
	f, err := SecretListFilters(map[string][]string{"id": {"ab"}, "names": {"pw"}, "name": {"db-", "web-"}, "label": {"env=prod", "team"}})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{"env": "prod", "team": ""}
	sr, cr := f.SecretRequest(), f.ConfigRequest()
	if !reflect.DeepEqual(sr.GetIdPrefixes(), []string{"ab"}) || !reflect.DeepEqual(sr.GetNames(), []string{"pw"}) || !reflect.DeepEqual(sr.GetLabels(), wantLabels) {
		t.Errorf("secret request = %v", sr)
	}
	if !reflect.DeepEqual(cr.GetIdPrefixes(), []string{"ab"}) || !reflect.DeepEqual(cr.GetNames(), []string{"pw"}) || !reflect.DeepEqual(cr.GetLabels(), wantLabels) {
		t.Errorf("config request = %v", cr)
	}
	for name, want := range map[string]bool{"db-pw": true, "web-key": true, "db": false, "pw": false} {
		if f.Match(name) != want {
			t.Errorf("name filter on %q: got %v", name, !want)
		}
	}
	none, err := SecretListFilters(map[string][]string{})
	if err != nil || !none.Match("anything") || len(none.SecretRequest().GetNames()) != 0 {
		t.Errorf("no filters: %v, %v", none, err)
	}
	if _, err := SecretListFilters(map[string][]string{"driver": {"x"}}); err == nil || !errors.Is(err, api.ErrInvalidArgument) || err.Error() != "invalid filter 'driver'" {
		t.Errorf("unknown key: %v", err)
	}
}
