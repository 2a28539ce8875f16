package worker

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/overlaynet/dns"
	"github.com/shoal-project/shoal/overlaynet/lb"
	"github.com/shoal-project/shoal/overlaynet/peers"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// endpointList is a gossip table's content, changed by the test (the
// gossip itself is tested in overlaynet/peers and on the test hosts).
type endpointList struct {
	mu  sync.Mutex
	eps []peers.Endpoint
}

func (l *endpointList) Endpoints(_ context.Context, vnis ...uint32) ([]peers.Endpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []peers.Endpoint
	for _, e := range l.eps {
		if slices.Contains(vnis, e.VNI) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (l *endpointList) set(eps ...peers.Endpoint) {
	l.mu.Lock()
	l.eps = eps
	l.mu.Unlock()
}

func ep(vni uint32, ip, task, svc, vip string, aliases ...string) peers.Endpoint {
	return peers.Endpoint{VNI: vni, IP: net.ParseIP(ip).To4(), Task: peers.TaskInfo{Name: task, Service: svc,
		ServiceID: "id-" + svc, VIP: net.ParseIP(vip).To4(), DNSRR: vip == "", Aliases: aliases, Serving: true}}
}

// askA asks the resolver inside the namespace at path for name's A records.
func askA(t *testing.T, path, name string) []string {
	t.Helper()
	var out []string
	err := sandbox.Do(path, func() error {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, dns.Address+":53")
		if err != nil {
			return err
		}
		for _, a := range r.Answer {
			if a, ok := a.(*mdns.A); ok {
				out = append(out, a.A.String())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ask %s: %v", name, err)
	}
	slices.Sort(out)
	return out
}

// TestDiscoveryTask serves a task in a real namespace: its resolver at
// 127.0.0.11 answers service names (VIP or, for dnsrr, task addresses),
// tasks.NAME, aliases and task names of its own networks only, serving
// tasks only, and its VIP
// table follows the endpoints as they come and go; Remove stops the
// resolver.
func TestDiscoveryTask(t *testing.T) {
	path := filepath.Join(t.TempDir(), "task-c1")
	if err := sandbox.Create(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Remove(path) })
	src := &endpointList{}
	// A task that is attached but not running (or stopping, or failed its
	// health check) gets no traffic.
	starting := ep(4096, "198.19.1.5", "web.3.e", "web", "198.19.1.2")
	starting.Task.Serving = false
	src.set(
		ep(4096, "198.19.1.3", "web.1.a", "web", "198.19.1.2", "www"),
		ep(4096, "198.19.1.4", "web.2.b", "web", "198.19.1.2", "www"),
		ep(4096, "198.19.1.6", "rr.1.c", "rr", ""),
		ep(4097, "198.19.2.3", "other.1.d", "other", "198.19.2.2"),
		starting,
	)
	ctx, cancel := context.WithCancel(context.Background())
	d := NewDiscovery(ctx, nil)
	d.Source = src
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	task := &api.Task{Id: "c1", Networks: []*api.NetworkAttachment{{Network: &api.Network{Id: "n1", Vni: 4096}}}}
	if err := d.Add(ctx, task, path); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"web":       {"198.19.1.2"},
		"WWW":       {"198.19.1.2"},
		"tasks.web": {"198.19.1.3", "198.19.1.4"},
		"rr":        {"198.19.1.6"},
		"tasks.rr":  {"198.19.1.6"},
		"web.2.b":   {"198.19.1.4"},
		"web.3.e":   nil,
		"other":     nil, // another network's service
		"tasks.":    nil,
	} {
		if got := askA(t, path, name); !slices.Equal(got, want) {
			t.Errorf("%s resolves to %v, want %v", name, got, want)
		}
	}
	tab, err := lb.New(path, lbTable)
	if err != nil {
		t.Fatal(err)
	}
	if vips, err := tab.VIPs(); err != nil || !slices.Equal(vips, []netip.Addr{netip.MustParseAddr("198.19.1.2")}) {
		t.Fatalf("VIP table %v (%v), want only web's VIP", vips, err)
	}

	// web's tasks leave: its name no longer answers, its VIP stays in the
	// table (refused rather than timing out).
	src.set(ep(4096, "198.19.1.6", "rr.1.c", "rr", ""))
	d.Changed()
	deadline := time.Now().Add(5 * time.Second)
	for len(askA(t, path, "tasks.web")) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := askA(t, path, "web"); len(got) != 0 {
		t.Fatalf("web without tasks resolves to %v", got)
	}
	if vips, err := tab.VIPs(); err != nil || len(vips) != 1 {
		t.Fatalf("VIP table after web's tasks left: %v (%v)", vips, err)
	}

	d.Remove("c1")
	err = sandbox.Do(path, func() error {
		_, _, err := (&mdns.Client{Timeout: 300 * time.Millisecond}).Exchange(new(mdns.Msg).SetQuestion("rr.", mdns.TypeA), dns.Address+":53")
		return err
	})
	if err == nil {
		t.Fatal("the resolver still answers after Remove")
	}
}
