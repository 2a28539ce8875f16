package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

func portSvc(id string, ports ...*api.PortConfig) *api.Service {
	return &api.Service{Id: id, Spec: &api.ServiceSpec{
		Annotations: &api.Annotations{Name: "svc-" + id},
		Endpoint:    &api.EndpointSpec{Ports: ports},
	}}
}

func ingress(published, target uint32) *api.PortConfig {
	return &api.PortConfig{PublishedPort: published, TargetPort: target}
}

// mustPorts allocates svc's ports and stores them in it, as the control
// API does in its transaction.
func mustPorts(t *testing.T, store []*api.Service, svc *api.Service) []*api.Service {
	t.Helper()
	ports, err := AllocatePorts(store, svc)
	if err != nil {
		t.Fatalf("allocate ports of %s: %v", svc.GetId(), err)
	}
	if svc.Endpoint == nil {
		svc.Endpoint = &api.Endpoint{}
	}
	svc.Endpoint.Ports = ports
	for i, o := range store {
		if o.GetId() == svc.GetId() {
			store[i] = svc
			return store
		}
	}
	return append(store, svc)
}

func published(svc *api.Service) []uint32 {
	var out []uint32
	for _, p := range svc.GetEndpoint().GetPorts() {
		out = append(out, p.GetPublishedPort())
	}
	return out
}

func TestAllocatePorts(t *testing.T) {
	var store []*api.Service
	web := portSvc("a", ingress(8080, 80), ingress(0, 443))
	store = mustPorts(t, store, web)
	if got := published(web); fmt.Sprint(got) != "[8080 30000]" {
		t.Fatalf("web's ports: %v", got)
	}

	// A port another service holds is refused, naming the holder, on one line.
	_, err := AllocatePorts(store, portSvc("b", ingress(8080, 80)))
	if !errors.Is(err, ErrPortTaken) || !strings.Contains(err.Error(), "8080/tcp is already published by service svc-a") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("taken port: %v", err)
	}
	// The same number over UDP is another port.
	store = mustPorts(t, store, portSvc("u", &api.PortConfig{PublishedPort: 8080, TargetPort: 53, Protocol: api.PortConfig_UDP}))
	// A dynamic port skips the ones held, and the ones its own spec names.
	other := portSvc("c", ingress(0, 80), ingress(30001, 81))
	store = mustPorts(t, store, other)
	if got := published(other); fmt.Sprint(got) != "[30002 30001]" {
		t.Fatalf("dynamic ports beside held ones: %v", got)
	}

	// An update that changes something else keeps the dynamic port, even
	// once a lower one is free.
	store = store[1:] // web removed: 8080 and 30000 are free
	upd := proto.Clone(other).(*api.Service)
	upd.Spec.Endpoint.Ports = append(upd.Spec.Endpoint.Ports, ingress(0, 82))
	store = mustPorts(t, store, upd)
	if got := published(upd); fmt.Sprint(got) != "[30002 30001 30000]" {
		t.Fatalf("update: %v", got)
	}
	// A freed port is handed out again.
	store = mustPorts(t, store, portSvc("d", ingress(8080, 80)))

	// Mode host: shared between services, never a mesh port, needs a number.
	host := func(p uint32) *api.PortConfig {
		return &api.PortConfig{PublishedPort: p, TargetPort: 80, PublishMode: api.PortConfig_HOST}
	}
	store = mustPorts(t, store, portSvc("h1", host(9000)))
	store = mustPorts(t, store, portSvc("h2", host(9000)))
	if _, err := AllocatePorts(store, portSvc("h3", host(8080))); !errors.Is(err, ErrPortTaken) {
		t.Fatalf("host port on a mesh port: %v", err)
	}
	if _, err := AllocatePorts(store, portSvc("h4", host(9001), ingress(9001, 81))); !errors.Is(err, ErrPortTaken) {
		t.Fatalf("host and mesh port of one service: %v", err)
	}
	if _, err := AllocatePorts(store, portSvc("h5", host(0))); err == nil || !strings.Contains(err.Error(), "needs a published port") {
		t.Fatalf("host port without a number: %v", err)
	}
	// Host-mode ports do not hold mesh ports.
	mustPorts(t, store, portSvc("m", ingress(9000, 80)))
}

func TestAllocatePortsExhausted(t *testing.T) {
	var store []*api.Service
	var ports []*api.PortConfig
	for range LastDynamicPort - FirstDynamicPort + 1 {
		ports = append(ports, ingress(0, 80))
	}
	store = mustPorts(t, store, portSvc("all", ports...))
	_, err := AllocatePorts(store, portSvc("late", ingress(0, 80)))
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "30000-32767") {
		t.Fatalf("exhausted range: %v", err)
	}
}

// TestPortsNeverTwice runs random creates, updates and removes over a
// store and checks after each that no mesh port is held by two services.
// The allocator keeps no state, so a new leader computing from the same
// store is the same as the old one: this is the leader-change property.
func TestPortsNeverTwice(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		var store []*api.Service
		for step := range 300 {
			switch op := r.IntN(4); {
			case op == 0 && len(store) > 0:
				i := r.IntN(len(store))
				store = append(store[:i:i], store[i+1:]...)
			default:
				var svc *api.Service
				if op == 1 && len(store) > 0 {
					svc = proto.Clone(store[r.IntN(len(store))]).(*api.Service)
					svc.Spec.Endpoint.Ports = nil
				} else {
					svc = portSvc(fmt.Sprint("s", step))
				}
				for range r.IntN(3) + 1 {
					p := uint32(0)
					if r.IntN(2) == 0 {
						p = uint32(FirstDynamicPort + r.IntN(8))
					}
					svc.Spec.Endpoint.Ports = append(svc.Spec.Endpoint.Ports, ingress(p, uint32(80+r.IntN(3))))
				}
				ports, err := AllocatePorts(store, svc)
				if err != nil {
					if !errors.Is(err, ErrPortTaken) {
						t.Fatalf("seed %d step %d: %v", seed, step, err)
					}
					continue
				}
				svc.Endpoint = &api.Endpoint{Ports: ports}
				found := false
				for i, o := range store {
					if o.GetId() == svc.GetId() {
						store[i], found = svc, true
					}
				}
				if !found {
					store = append(store, svc)
				}
			}
			held := map[uint32]string{}
			for _, s := range store {
				for _, p := range s.GetEndpoint().GetPorts() {
					if h, ok := held[p.GetPublishedPort()]; ok {
						t.Fatalf("seed %d step %d: port %d held by %s and %s", seed, step, p.GetPublishedPort(), h, s.GetId())
					}
					held[p.GetPublishedPort()] = s.GetId()
				}
			}
		}
	}
}
