package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// PortMapping publishes a container port on the host, like `-p
// [HostIP:]HostPort:ContainerPort[/Protocol]`.
type PortMapping struct {
	// HostIP limits the mapping to one host address; the zero value (or
	// 0.0.0.0) means every address of the host, 127.0.0.1 included.
	HostIP netip.Addr `json:"host_ip,omitzero"`
	// HostPort 0 asks for a free port from the kernel's ephemeral range.
	HostPort      uint16 `json:"host_port"`
	ContainerPort uint16 `json:"container_port"`
	// Protocol is "tcp" (the default when empty) or "udp".
	Protocol string `json:"protocol"`
}

func (pm PortMapping) hostAddr() string {
	ip := "0.0.0.0"
	if pm.HostIP.IsValid() {
		ip = pm.HostIP.String()
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(pm.HostPort)))
}

// overlaps reports whether two mappings would claim the same host socket.
func (pm PortMapping) overlaps(o PortMapping) bool {
	if pm.Protocol != o.Protocol || pm.HostPort != o.HostPort {
		return false
	}
	any := func(a netip.Addr) bool { return !a.IsValid() || a.IsUnspecified() }
	return any(pm.HostIP) || any(o.HostIP) || pm.HostIP == o.HostIP
}

// ErrPortAllocated is the class of a host port already published by another
// endpoint or held by a socket of the host; it also matches ErrConflict. Its
// message follows Docker's ("Bind for 0.0.0.0:8080 failed: port is already
// allocated").
var ErrPortAllocated error = portAllocated{}

type portAllocated struct{}

func (portAllocated) Error() string        { return "port is already allocated" }
func (portAllocated) Is(target error) bool { return target == ErrConflict }

func normalize(pm PortMapping) (PortMapping, error) {
	pm.Protocol = strings.ToLower(pm.Protocol)
	if pm.Protocol == "" {
		pm.Protocol = "tcp"
	}
	if pm.Protocol != "tcp" && pm.Protocol != "udp" {
		return pm, fmt.Errorf("%w: protocol %q (want tcp or udp)", ErrInvalid, pm.Protocol)
	}
	if pm.ContainerPort == 0 {
		return pm, fmt.Errorf("%w: container port 0", ErrInvalid)
	}
	if pm.HostIP.IsValid() {
		pm.HostIP = pm.HostIP.Unmap()
		if !pm.HostIP.Is4() {
			return pm, fmt.Errorf("%w: host IP %s: only IPv4 is supported", ErrInvalid, pm.HostIP)
		}
		if pm.HostIP.IsUnspecified() {
			pm.HostIP = netip.Addr{}
		}
	}
	return pm, nil
}

// Publish maps host ports to the endpoint id (whose address is ip; nil means
// the address Attach gave it). It returns the mappings as programmed, with
// host ports chosen for those that asked for 0. A host port published by
// another endpoint, or bound by a socket of the host, is refused with
// ErrPortAllocated and nothing of the call is applied.
func (n *Network) Publish(ctx context.Context, id string, ip net.IP, ports []PortMapping) ([]PortMapping, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("publish %s: %w", id, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ep, ok := n.st.Endpoints[id]
	if !ok || !ep.IP.IsValid() {
		return nil, fmt.Errorf("%w: publish %s: no endpoint with an address on %s", ErrNotFound, id, n.opts.Name)
	}
	if ip != nil {
		if a, ok := netip.AddrFromSlice(ip.To4()); !ok || a != ep.IP {
			return nil, fmt.Errorf("%w: publish %s: address %s is not the endpoint's %s", ErrInvalid, id, ip, ep.IP)
		}
	}
	var taken []PortMapping
	for _, e := range n.st.Endpoints {
		taken = append(taken, e.Ports...)
	}
	var added []PortMapping
	for _, pm := range ports {
		pm, err := normalize(pm)
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", id, err)
		}
		if pm.HostPort == 0 {
			if pm.HostPort, err = freePort(pm, taken); err != nil {
				return nil, fmt.Errorf("publish %s: %w", id, err)
			}
		} else if err := claim(pm, taken); err != nil {
			return nil, fmt.Errorf("publish %s: %w", id, err)
		}
		taken = append(taken, pm)
		added = append(added, pm)
	}
	old := ep.Ports
	ep.Ports = append(append([]PortMapping(nil), old...), added...)
	if err := n.st.save(n.statePath); err != nil {
		ep.Ports = old
		return nil, fmt.Errorf("publish %s: %w", id, err)
	}
	if err := program(n.opts, n.st); err != nil {
		ep.Ports = old
		n.st.save(n.statePath)
		return nil, fmt.Errorf("publish %s: %w", id, err)
	}
	return added, nil
}

// claim checks that pm's host socket is free: not published here, and not
// bound by a process of the host. Nothing stays bound afterwards: the port is
// served by DNAT, not by a socket, so this is a check, not a reservation.
func claim(pm PortMapping, taken []PortMapping) error {
	for _, t := range taken {
		if pm.overlaps(t) {
			return fmt.Errorf("Bind for %s failed: %w", pm.hostAddr(), ErrPortAllocated)
		}
	}
	if err := probe(pm); err != nil {
		if errors.Is(err, errInUse) {
			return fmt.Errorf("Bind for %s failed: %w", pm.hostAddr(), ErrPortAllocated)
		}
		return fmt.Errorf("Bind for %s failed: %w", pm.hostAddr(), err)
	}
	return nil
}

var errInUse = errors.New("address in use")

func probe(pm PortMapping) error {
	addr := pm.hostAddr()
	if pm.Protocol == "udp" {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			if isAddrInUse(err) {
				return errInUse
			}
			return err
		}
		return c.Close()
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		if isAddrInUse(err) {
			return errInUse
		}
		return err
	}
	return l.Close()
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

// freePort picks the first port of the kernel's ephemeral range that claim
// accepts, as Docker does for `-p 80` and `-P`.
func freePort(pm PortMapping, taken []PortMapping) (uint16, error) {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l > 0 && l <= h && h < 65536 {
				lo, hi = l, h
			}
		}
	}
	for p := lo; p <= hi; p++ {
		pm.HostPort = uint16(p)
		if claim(pm, taken) == nil {
			return pm.HostPort, nil
		}
	}
	return 0, fmt.Errorf("%w: no free host port in %d-%d", ErrExhausted, lo, hi)
}

// Published returns the ports published for endpoint id, nil for none or an
// unknown id: a restarted daemon adopting an endpoint tells by it that its
// ports are programmed already.
func (n *Network) Published(id string) []PortMapping {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ep, ok := n.st.Endpoints[id]; ok {
		return slices.Clone(ep.Ports)
	}
	return nil
}
