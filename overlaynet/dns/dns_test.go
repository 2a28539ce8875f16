package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

type table map[string]Record

func (t table) Lookup(_ context.Context, asker, name string) (Record, bool) {
	if asker != "c1" {
		return Record{}, false
	}
	r, ok := t[name]
	return r, ok
}

// serve starts a Server on loopback ports and returns its address.
func serve(t *testing.T, cfg Config) string {
	t.Helper()
	// The UDP port the kernel picks may be taken for TCP: pick again rather
	// than skip the test's checks.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp4", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 9 {
				t.Fatalf("no loopback port free for both UDP and TCP: %v", err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := Serve(ctx, cfg, pc, ln)
	t.Cleanup(func() { cancel(); s.Wait() })
	return pc.LocalAddr().String()
}

func ask(t *testing.T, proto, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: proto, Timeout: 3 * time.Second}
	var resp *mdns.Msg
	var err error
	for i := 0; i < 20; i++ { // the server's goroutines may not run yet
		if resp, _, err = c.Exchange(m, addr); err == nil {
			return resp
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s query %s to %s: %v", proto, name, addr, err)
	return nil
}

func addrsOf(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestLocalAndForwarded(t *testing.T) {
	// The "host's resolver": a real miekg server knowing one external name.
	upstream := serve(t, Config{Asker: "c1", Lookup: table{"example.test": {Addrs: []netip.Addr{netip.MustParseAddr("198.18.9.9")}}}})
	addr := serve(t, Config{
		Asker: "c1",
		Lookup: table{
			"web": {Kind: KindContainer, Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}},
			"svc": {Kind: KindTasks, Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.4")}},
		},
		Upstreams: []string{upstream},
	})
	for _, proto := range []string{"udp", "tcp"} {
		r := ask(t, proto, addr, "WEB", mdns.TypeA)
		if got := addrsOf(r); len(got) != 1 || got[0] != "198.18.0.2" {
			t.Errorf("%s: web = %v, want [198.18.0.2]", proto, got)
		}
		// As dockerd's resolver: not authoritative, recursion available.
		if r.Authoritative || !r.RecursionAvailable {
			t.Errorf("%s: web answered with aa=%v ra=%v, want aa=false ra=true", proto, r.Authoritative, r.RecursionAvailable)
		}
		if got := addrsOf(ask(t, proto, addr, "svc", mdns.TypeA)); len(got) != 2 {
			t.Errorf("%s: svc = %v, want two addresses", proto, got)
		}
		if r := ask(t, proto, addr, "web", mdns.TypeAAAA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("%s: AAAA web = %v, want NOERROR and no answer", proto, r)
		}
		if got := addrsOf(ask(t, proto, addr, "example.test", mdns.TypeA)); len(got) != 1 || got[0] != "198.18.9.9" {
			t.Errorf("%s: forwarded example.test = %v, want [198.18.9.9]", proto, got)
		}
	}
}

func TestNoUpstreamServfail(t *testing.T) {
	addr := serve(t, Config{Asker: "c1", Lookup: table{}})
	if r := ask(t, "udp", addr, "unknown.test", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode = %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
}

func TestHostUpstreams(t *testing.T) {
	got := HostUpstreams([]byte("# x\nnameserver 127.0.0.53\nnameserver 198.18.1.1\nnameserver bad\nsearch a\n"))
	if len(got) != 2 || got[0] != "127.0.0.53" || got[1] != "198.18.1.1" {
		t.Errorf("HostUpstreams = %v", got)
	}
}
