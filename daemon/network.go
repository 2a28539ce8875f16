package daemon

import (
	"context"
	"fmt"
	"strconv"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/overlaynet/bridge"
)

// portMappings turns HostConfig.PortBindings into the bridge's mappings.
func portMappings(hc *container.HostConfig) ([]bridge.PortMapping, error) {
	var out []bridge.PortMapping
	for port, bindings := range hc.PortBindings {
		if len(bindings) == 0 {
			bindings = append(bindings, network.PortBinding{})
		}
		for _, b := range bindings {
			m := bridge.PortMapping{HostIP: b.HostIP, ContainerPort: port.Num(), Protocol: string(port.Proto())}
			if b.HostPort != "" {
				n, err := strconv.ParseUint(b.HostPort, 10, 16)
				if err != nil {
					return nil, badRequest("invalid host port %q", b.HostPort)
				}
				m.HostPort = uint16(n)
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// connectNetwork gives a bridge-mode container its namespace, address and
// published ports, and records them on the container.
func (d *Daemon) connectNetwork(ctx context.Context, c containers.Container, ports []bridge.PortMapping) error {
	if c.Config.NetworkMode != "bridge" {
		return nil
	}
	ep, err := d.bridge.Attach(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", c.ID[:12], d.bridge.Name(), err)
	}
	settings := containers.NetworkSettings{
		IPAddress: ep.IP.String(), IPPrefixLen: ep.Prefix, Gateway: ep.Gateway.String(), MacAddress: ep.MAC.String(),
	}
	if len(ports) > 0 {
		got, err := d.bridge.Publish(ctx, c.ID, ep.IP, ports)
		if err != nil {
			_ = d.bridge.Detach(context.WithoutCancel(ctx), c.ID)
			return fmt.Errorf("driver failed programming external connectivity on endpoint %s (%s): %w", c.Name[1:], c.ID[:12], err)
		}
		for _, p := range got {
			hostIP := ""
			if p.HostIP.IsValid() {
				hostIP = p.HostIP.String()
			}
			settings.Ports = append(settings.Ports, containers.PortBinding{HostIP: hostIP, HostPort: int(p.HostPort), ContainerPort: int(p.ContainerPort), Protocol: p.Protocol})
		}
	}
	return d.engine.SetNetwork(c.ID, ep.NetNSPath, settings)
}
