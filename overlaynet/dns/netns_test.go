package dns

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// askIn queries addr over UDP from inside the namespace at path.
func askIn(t *testing.T, path, addr, name string) (*mdns.Msg, error) {
	t.Helper()
	type res struct {
		m   *mdns.Msg
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		target, err := netns.GetFromPath(path)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- res{err: err}
			return
		}
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
		ch <- res{r, err}
	}()
	r := <-ch
	return r.m, r.err
}

// TestListenNetNS serves a resolver at 127.0.0.11:53 inside a real network
// namespace and asks it from there; once stopped, its sockets are gone
// (the address can be bound again).
func TestListenNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	path := filepath.Join(t.TempDir(), "ns")
	if err := sandbox.Create(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Remove(path) })
	for round := 0; round < 2; round++ {
		pc, ln, err := ListenNetNS(path, Address+":53")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		s := Serve(ctx, Config{Asker: "c1", Lookup: table{"web": {Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}}}}, pc, ln)
		var r *mdns.Msg
		for i := 0; i < 20; i++ {
			if r, err = askIn(t, path, Address+":53", "web"); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		s.Wait()
		if err != nil {
			t.Fatalf("round %d: query in the namespace: %v", round, err)
		}
		if got := addrsOf(r); len(got) != 1 || got[0] != "198.18.0.2" {
			t.Fatalf("round %d: web = %v", round, got)
		}
	}
	if _, _, err := ListenNetNS(filepath.Join(t.TempDir(), "missing"), Address+":53"); err == nil {
		t.Fatal("ListenNetNS on a missing namespace succeeded")
	}
}
