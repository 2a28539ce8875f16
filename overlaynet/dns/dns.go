// Package dns is the embedded resolver of a container on a user-defined
// network, as libnetwork's: a server at 127.0.0.11:53 (UDP and TCP) inside the
// container's network namespace that answers the names of its peers on the
// networks it shares with them and forwards every other name to the host's
// resolvers.
//
// Docker binds a random port in the namespace and DNATs port 53 to it with
// iptables; here the sockets are bound on 127.0.0.11:53 directly, by a thread
// that entered the namespace for the time of the bind (see ListenNetNS), and
// served by the daemon's goroutines. A socket stays in the namespace it was
// made in, so no rule is needed and nothing is left behind in the namespace
// when the server closes. The namespace's lo must be up (every sandbox has
// it up), as 127.0.0.0/8 lives on lo.
//
// What a name means comes from a Lookup the caller supplies: the engine maps
// container names, aliases and short IDs; the cluster can map a service name
// to its VIP or its task addresses and tasks.NAME to the task addresses.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// Address is where the resolver listens inside a container, as Docker's.
const Address = "127.0.0.11"

// Kind says what a name resolved to.
type Kind int

// Kinds of Record.
const (
	// KindContainer is a container (or task) name, alias or short ID.
	KindContainer Kind = iota
	// KindVIP is a service in endpoint mode vip: one virtual address.
	KindVIP
	// KindTasks is a service in endpoint mode dnsrr or tasks.NAME: the
	// addresses of its running tasks.
	KindTasks
)

// Record is the answer to a name.
type Record struct {
	Kind  Kind
	Addrs []netip.Addr
}

// Lookup maps a name asked by one container (the server's owner) to a
// record; found is false for a name it does not know, which is then
// forwarded. name has no trailing dot and is in lower case.
type Lookup interface {
	Lookup(ctx context.Context, asker, name string) (rec Record, found bool)
}

// Config of a Server.
type Config struct {
	// Asker identifies the container the server serves (passed to Lookup).
	Asker string
	// Lookup answers local names.
	Lookup Lookup
	// Upstreams are the resolvers ("ip" or "ip:port") other names go to;
	// none means names that Lookup does not know fail with SERVFAIL.
	Upstreams []string
	// TTL of local answers; 0 means 600 s as Docker.
	TTL uint32
}

// Server is one container's resolver.
type Server struct {
	cfg Config
	udp *mdns.Server
	tcp *mdns.Server
	wg  sync.WaitGroup
}

// Serve answers queries on pc and ln until ctx ends, then closes them.
func Serve(ctx context.Context, cfg Config, pc net.PacketConn, ln net.Listener) *Server {
	if cfg.TTL == 0 {
		cfg.TTL = 600
	}
	s := &Server{cfg: cfg}
	h := mdns.HandlerFunc(s.handle)
	s.udp = &mdns.Server{PacketConn: pc, Handler: h}
	s.tcp = &mdns.Server{Listener: ln, Handler: h}
	for _, srv := range []*mdns.Server{s.udp, s.tcp} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				slog.Debug("dns: server ended", "asker", cfg.Asker, "err", err)
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		// Closing the sockets ends ActivateAndServe even if it has not
		// started yet, when Shutdown would fail with "not started".
		pc.Close()
		ln.Close()
		s.udp.Shutdown()
		s.tcp.Shutdown()
	}()
	return s
}

// Wait returns once the server has stopped: its context given to Serve
// ended and every goroutine of it is gone.
func (s *Server) Wait() { s.wg.Wait() }

func (s *Server) handle(w mdns.ResponseWriter, req *mdns.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	if s.cfg.Lookup != nil && q.Qclass == mdns.ClassINET {
		if rec, ok := s.cfg.Lookup.Lookup(ctx, s.cfg.Asker, name); ok {
			m := new(mdns.Msg)
			m.SetReply(req)
			// Not authoritative, as dockerd's resolver answers (nslookup
			// says "Non-authoritative answer" for both).
			m.RecursionAvailable = true
			if q.Qtype == mdns.TypeA {
				for _, a := range rec.Addrs {
					if a.Is4() {
						m.Answer = append(m.Answer, &mdns.A{
							Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: s.cfg.TTL},
							A:   a.AsSlice(),
						})
					}
				}
			}
			// Other types of a known name: NOERROR with no answer, as
			// Docker (an AAAA query must not be forwarded and fail).
			w.WriteMsg(m)
			return
		}
	}
	s.forward(ctx, w, req)
}

// forward relays req to the upstreams in turn, over the transport it came
// on, and relays the first answer.
func (s *Server) forward(ctx context.Context, w mdns.ResponseWriter, req *mdns.Msg) {
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	c := &mdns.Client{Net: proto, Timeout: 2 * time.Second}
	var errs []error
	for _, up := range s.cfg.Upstreams {
		if _, _, err := net.SplitHostPort(up); err != nil {
			up = net.JoinHostPort(up, "53")
		}
		resp, _, err := c.ExchangeContext(ctx, req, up)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp.Id = req.Id
		w.WriteMsg(resp)
		return
	}
	if len(errs) > 0 {
		slog.Debug("dns: forward failed", "asker", s.cfg.Asker, "err", errors.Join(errs...))
	}
	m := new(mdns.Msg)
	m.SetRcode(req, mdns.RcodeServerFailure)
	w.WriteMsg(m)
}

// ListenNetNS opens the resolver's UDP and TCP sockets at addr (normally
// Address:53) inside the network namespace bind-mounted at path. The
// calling goroutine's thread enters the namespace only for the binds and is
// returned to the daemon's namespace; if that fails the thread is left
// locked, so the runtime discards it rather than reuse it in a wrong one.
func ListenNetNS(path, addr string) (pc net.PacketConn, ln net.Listener, err error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: open netns %s: %w", path, err)
	}
	defer target.Close()
	type result struct {
		pc  net.PacketConn
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	// A goroutine of its own, so that a thread that cannot get back is
	// dropped when it ends (LockOSThread without unlock).
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("dns: own netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("dns: enter netns %s: %w", path, err)}
			return
		}
		var r result
		r.pc, r.err = net.ListenPacket("udp4", addr)
		if r.err == nil {
			r.ln, r.err = net.Listen("tcp4", addr)
			if r.err != nil {
				r.pc.Close()
			}
		}
		if r.err != nil {
			r.err = fmt.Errorf("dns: listen on %s in %s: %w", addr, path, r.err)
		}
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- r
	}()
	r := <-ch
	return r.pc, r.ln, r.err
}

// HostUpstreams reads the nameservers of a resolv.conf file. Loopback ones
// are kept: the forwarder's sockets are the daemon's, in the host's
// namespace, so a host stub resolver (127.0.0.53) is reachable, as with
// Docker 26's resolver.
func HostUpstreams(resolvConf []byte) []string {
	var out []string
	for _, line := range strings.Split(string(resolvConf), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if _, err := netip.ParseAddr(f[1]); err != nil {
			continue
		}
		out = append(out, f[1])
	}
	return out
}

// Start serves cfg at Address:53 in the network namespace at netnsPath (a
// container's or a task's) until ctx ends or stop is called; stop waits for
// the server to end. It is how the daemon starts every embedded resolver.
func Start(ctx context.Context, netnsPath string, cfg Config) (stop func(), err error) {
	pc, ln, err := ListenNetNS(netnsPath, Address+":53")
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		pc.Close()
		ln.Close()
		return nil, fmt.Errorf("dns: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	srv := Serve(sctx, cfg, pc, ln)
	return func() { cancel(); srv.Wait() }, nil
}
