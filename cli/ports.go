package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/network"
)

// ErrInvalidPort is wrapped by every -p parse error.
var ErrInvalidPort = errors.New("invalid port specification")

// portMapping is one container port and where it is published on the host.
type portMapping struct {
	Port    network.Port
	Binding network.PortBinding
}

// parsePortSpec parses one -p/--publish value with docker's syntax:
// [ip:][hostPort:]containerPort[/proto], where ip may be a bracketed IPv6
// address and either port may be a range (start-end). Equal-sized ranges
// pair up; a single container port with a host range publishes it on any
// free port of that range.
func parsePortSpec(spec string) ([]portMapping, error) {
	ip, hostPort, ctrPort := splitPortParts(spec)
	ctrPort, proto, _ := strings.Cut(ctrPort, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("%w: invalid proto: %s", ErrInvalidPort, proto)
	}

	var addr netip.Addr
	if ip != "" {
		raw := ip
		if strings.HasPrefix(raw, "[") && strings.HasSuffix(raw, "]") {
			raw = raw[1 : len(raw)-1]
		}
		a, err := netip.ParseAddr(raw)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%w: invalid IP address: %s", ErrInvalidPort, ip)
		}
		addr = a
	}
	if ctrPort == "" {
		return nil, fmt.Errorf("%w: no port specified: %s<empty>", ErrInvalidPort, spec)
	}
	start, end, err := parsePortRange(ctrPort, 1)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid containerPort: %s", ErrInvalidPort, ctrPort)
	}
	var hStart, hEnd uint16
	if hostPort != "" {
		hStart, hEnd, err = parsePortRange(hostPort, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: invalid hostPort: %s", ErrInvalidPort, hostPort)
		}
		if end-start != hEnd-hStart && end != start {
			return nil, fmt.Errorf("%w: invalid ranges specified for container and host Ports: %s and %s", ErrInvalidPort, ctrPort, hostPort)
		}
	}

	out := make([]portMapping, 0, int(end-start)+1)
	for i := 0; i <= int(end-start); i++ {
		p, ok := network.PortFrom(start+uint16(i), network.IPProtocol(proto))
		if !ok {
			return nil, fmt.Errorf("%w: invalid port %d/%s", ErrInvalidPort, int(start)+i, proto)
		}
		b := network.PortBinding{HostIP: addr}
		switch {
		case hostPort == "":
		case start == end && hStart != hEnd:
			b.HostPort = fmt.Sprintf("%d-%d", hStart, hEnd)
		default:
			b.HostPort = strconv.Itoa(int(hStart) + i)
		}
		out = append(out, portMapping{Port: p, Binding: b})
	}
	return out, nil
}

// splitPortParts splits at colons from the right: the last part is the
// container port, the one before the host port, everything before that
// the IP (which may itself contain colons).
func splitPortParts(spec string) (ip, hostPort, ctrPort string) {
	parts := strings.Split(spec, ":")
	n := len(parts)
	switch n {
	case 1:
		return "", "", parts[0]
	case 2:
		return "", parts[0], parts[1]
	default:
		return strings.Join(parts[:n-2], ":"), parts[n-2], parts[n-1]
	}
}

// parsePortRange parses "N" or "N-M" with min <= N <= M <= 65535.
func parsePortRange(s string, min uint16) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	start, err := parsePortNumber(lo, min)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return start, start, nil
	}
	end, err := parsePortNumber(hi, min)
	if err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, fmt.Errorf("invalid range %s", s)
	}
	return start, end, nil
}

func parsePortNumber(s string, min uint16) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || uint16(n) < min {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return uint16(n), nil
}

// parsePublish turns every -p value into the exposed-port set and port
// bindings of a container.
func parsePublish(specs []string) (network.PortSet, network.PortMap, error) {
	if len(specs) == 0 {
		return nil, nil, nil
	}
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	for _, s := range specs {
		maps, err := parsePortSpec(s)
		if err != nil {
			return nil, nil, err
		}
		for _, m := range maps {
			exposed[m.Port] = struct{}{}
			bindings[m.Port] = append(bindings[m.Port], m.Binding)
		}
	}
	return exposed, bindings, nil
}
