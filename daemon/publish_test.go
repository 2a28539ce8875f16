package daemon

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

// TestCheckServiceNetworking: mode=host ports on a network pass, and ports
// through the routing mesh with or without a network; a mode=host port of a
// service on no network (its task would have no gateway-bridge leg) and an
// SCTP port are refused.
func TestCheckServiceNetworking(t *testing.T) {
	onNet := []swarm.NetworkAttachmentConfig{{Target: "app"}}
	host := swarm.PortConfig{TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}
	mesh := swarm.PortConfig{TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress}
	spec := func(nets []swarm.NetworkAttachmentConfig, ports ...swarm.PortConfig) swarm.ServiceSpec {
		return swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{Networks: nets}, EndpointSpec: &swarm.EndpointSpec{Ports: ports}}
	}
	for _, tt := range []struct {
		name string
		spec swarm.ServiceSpec
		want string
	}{
		{"no ports", swarm.ServiceSpec{}, ""},
		{"host on a network", spec(onNet, host), ""},
		{"mesh", spec(onNet, host, mesh), ""},
		{"mesh without a network", spec(nil, mesh), ""},
		{"default mode is the mesh", spec(nil, swarm.PortConfig{TargetPort: 80}), ""},
		{"sctp", spec(nil, swarm.PortConfig{TargetPort: 80, Protocol: "sctp"}), "SCTP ports is not supported"},
		{"host without a network", spec(nil, host), "need the service on an overlay network"},
	} {
		err := checkServiceNetworking(tt.spec)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
