package controlapi

import (
	"context"
	"fmt"
	"testing"

	"github.com/shoal-project/shoal/api"
)

func publishing(name string, ports ...*api.PortConfig) *api.ServiceSpec {
	spec := replicated(name, "busybox", 1)
	spec.Endpoint = &api.EndpointSpec{Ports: ports}
	return spec
}

func portsOf(svc *api.Service) string {
	var out []string
	for _, p := range svc.GetEndpoint().GetPorts() {
		out = append(out, fmt.Sprintf("%d:%d", p.GetPublishedPort(), p.GetTargetPort()))
	}
	return fmt.Sprint(out)
}

// TestPublishedPorts: ports are allocated in the write that stores the
// service, a taken one is refused naming its holder, and removal or an
// update frees them.
func TestPublishedPorts(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestServer(t)
	web, err := s.createService(ctx, &api.CreateServiceRequest{Spec: publishing("web", &api.PortConfig{PublishedPort: 8080, TargetPort: 80}, &api.PortConfig{TargetPort: 443})})
	if err != nil {
		t.Fatal(err)
	}
	if got := portsOf(web.Service); got != "[8080:80 30000:443]" || web.Service.GetEndpoint().GetSpec() == nil {
		t.Fatalf("web's endpoint: %v", web.Service.GetEndpoint())
	}
	_, err = s.createService(ctx, &api.CreateServiceRequest{Spec: publishing("api", &api.PortConfig{PublishedPort: 8080, TargetPort: 80})})
	wantErr(t, err, api.ErrConflict, "service api: published port taken: 8080/tcp is already published by service web")
	if _, err := s.getService(&api.GetServiceRequest{ServiceId: "api"}); err == nil {
		t.Fatal("refused service was stored")
	}

	// --publish-rm 8080 and an unrelated change: 443 keeps its port.
	spec := publishing("web", &api.PortConfig{TargetPort: 443})
	spec.GetReplicated().Replicas = 2
	upd, err := s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: web.Service.Meta.Version, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if got := portsOf(upd.Service); got != "[30000:443]" {
		t.Fatalf("after update: %s", got)
	}
	api2, err := s.createService(ctx, &api.CreateServiceRequest{Spec: publishing("api", &api.PortConfig{PublishedPort: 8080, TargetPort: 80})})
	if err != nil {
		t.Fatalf("8080 after web let it go: %v", err)
	}
	// Rolling web back to the spec with 8080 is refused now: api holds it.
	_, err = s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: upd.Service.Meta.Version, Rollback: true})
	wantErr(t, err, api.ErrConflict, "8080/tcp is already published by service api")

	if _, err := s.removeService(ctx, &api.RemoveServiceRequest{ServiceId: "web"}); err != nil {
		t.Fatal(err)
	}
	other, err := s.createService(ctx, &api.CreateServiceRequest{Spec: publishing("other", &api.PortConfig{TargetPort: 80})})
	if err != nil {
		t.Fatal(err)
	}
	if got := portsOf(other.Service); got != "[30000:80]" || portsOf(api2.Service) != "[8080:80]" {
		t.Fatalf("after web's removal: %s", got)
	}
}
