package allocator

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Range Swarm hands published ports out of for a port given as a target
// only (`--publish 80`).
const (
	FirstDynamicPort = 30000
	LastDynamicPort  = 32767
)

// ErrPortTaken is the class of the error for a published port another
// service holds.
var ErrPortTaken = errors.New("published port taken")

// portKey is a published port as the kernel sees it: a protocol and a number.
type portKey struct {
	proto api.PortConfig_Protocol
	port  uint32
}

func protoName(p api.PortConfig_Protocol) string {
	return strings.ToLower(p.String())
}

// AllocatePorts returns the ports svc publishes (what its Endpoint.Ports
// should be) for the ports its spec asks for, given every service in the
// store. Like the rest of the package it is pure and derives what is taken
// from the store: a port is held by the service whose Endpoint.Ports lists
// it, so it is free again once that service is removed or updated without
// it, and nothing is handed out twice across leader changes as long as the
// result is written in the same store transaction it was computed in (the
// control API does so at create and update).
//
// Ports published through the routing mesh (mode ingress) are cluster-wide:
// one listens on every node, so two services cannot share one. A port given
// as a target only gets the lowest free one of [FirstDynamicPort,
// LastDynamicPort], or keeps the one the service already had for the same
// target and protocol (an update that changes something else must not move
// its port). A port published in mode host listens on the task's node only,
// so two host-mode services may share one (the nodes they run on decide),
// but it cannot be a port the mesh holds on every node; mode host needs an
// explicit published port (a dynamic one would differ per node).
func AllocatePorts(services []*api.Service, svc *api.Service) ([]*api.PortConfig, error) {
	name := serviceName(svc)
	holder := map[portKey]string{}
	for _, o := range services {
		if o.GetId() == svc.GetId() {
			continue
		}
		for _, p := range o.GetEndpoint().GetPorts() {
			if p.GetPublishMode() == api.PortConfig_INGRESS && p.GetPublishedPort() != 0 {
				holder[portKey{p.GetProtocol(), p.GetPublishedPort()}] = serviceName(o)
			}
		}
	}
	spec := svc.GetSpec().GetEndpoint().GetPorts()
	// Ports this spec names explicitly; a dynamic port never takes one.
	mine := map[portKey]bool{}
	for _, p := range spec {
		if p.GetPublishedPort() == 0 {
			if p.GetPublishMode() == api.PortConfig_HOST {
				return nil, fmt.Errorf("service %s: port %d/%s in mode host needs a published port (published=P,target=%d,mode=host)",
					name, p.GetTargetPort(), protoName(p.GetProtocol()), p.GetTargetPort())
			}
			continue
		}
		k := portKey{p.GetProtocol(), p.GetPublishedPort()}
		if h, ok := holder[k]; ok {
			return nil, fmt.Errorf("service %s: %w: %d/%s is already published by service %s",
				name, ErrPortTaken, k.port, protoName(k.proto), h)
		}
		if mine[k] {
			return nil, fmt.Errorf("service %s: %w: %d/%s is published twice", name, ErrPortTaken, k.port, protoName(k.proto))
		}
		mine[k] = true
	}
	// An ingress port of this spec is on every node: a host-mode port of
	// the same spec cannot have it either.
	for _, p := range spec {
		if p.GetPublishMode() != api.PortConfig_HOST {
			continue
		}
		for _, q := range spec {
			if q.GetPublishMode() == api.PortConfig_INGRESS && q.GetProtocol() == p.GetProtocol() && q.GetPublishedPort() == p.GetPublishedPort() {
				return nil, fmt.Errorf("service %s: %w: %d/%s is published both through the routing mesh and in mode host",
					name, ErrPortTaken, p.GetPublishedPort(), protoName(p.GetProtocol()))
			}
		}
	}
	// What the service held before, per target, for dynamic ports to keep.
	had := map[portKey][]uint32{}
	for _, p := range svc.GetEndpoint().GetPorts() {
		if p.GetPublishMode() == api.PortConfig_INGRESS && p.GetPublishedPort() >= FirstDynamicPort && p.GetPublishedPort() <= LastDynamicPort {
			k := portKey{p.GetProtocol(), p.GetTargetPort()}
			had[k] = append(had[k], p.GetPublishedPort())
		}
	}
	used := func(k portKey) bool { _, ok := holder[k]; return ok || mine[k] }
	out := make([]*api.PortConfig, 0, len(spec))
	for _, p := range spec {
		np := proto.Clone(p).(*api.PortConfig)
		if np.GetPublishedPort() == 0 {
			tk := portKey{p.GetProtocol(), p.GetTargetPort()}
			if i := slices.IndexFunc(had[tk], func(n uint32) bool { return !used(portKey{p.GetProtocol(), n}) }); i >= 0 {
				np.PublishedPort = had[tk][i]
			} else {
				for n := uint32(FirstDynamicPort); n <= LastDynamicPort; n++ {
					if !used(portKey{p.GetProtocol(), n}) {
						np.PublishedPort = n
						break
					}
				}
				if np.PublishedPort == 0 {
					return nil, fmt.Errorf("service %s: %w: no free published port in %d-%d for target port %d/%s",
						name, ErrExhausted, FirstDynamicPort, LastDynamicPort, p.GetTargetPort(), protoName(p.GetProtocol()))
				}
			}
			mine[portKey{p.GetProtocol(), np.PublishedPort}] = true
		}
		out = append(out, np)
	}
	return out, nil
}
