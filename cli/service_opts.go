package cli

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
)

// ErrInvalidServiceSpec is wrapped by every error about a service flag the
// CLI refuses before asking the daemon.
var ErrInvalidServiceSpec = errors.New("invalid service specification")

// parseConstraint checks one --constraint expression locally. The daemon
// (like swarmkit) accepts exactly one of the operators == and != between a
// non-empty key and value; refusing anything else here gives a clear error
// before a service is half made.
func parseConstraint(expr string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: invalid constraint %q: %s (expected key==value or key!=value)", ErrInvalidServiceSpec, expr, why)
	}
	op := ""
	for _, candidate := range []string{"==", "!="} {
		if strings.Contains(expr, candidate) {
			if op != "" {
				return "", bad("more than one operator")
			}
			op = candidate
		}
	}
	if op == "" {
		return "", bad("no == or != operator")
	}
	key, value, _ := strings.Cut(expr, op)
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if strings.Count(expr, op) != 1 {
		return "", bad("more than one operator")
	}
	if key == "" {
		return "", bad("empty key")
	}
	if value == "" {
		return "", bad("empty value")
	}
	if strings.ContainsAny(key, " \t=!") {
		return "", bad("malformed key")
	}
	return expr, nil
}

// parsePlacementPref parses --placement-pref as docker does: only
// "spread=DESCRIPTOR" exists.
func parsePlacementPref(value string) (swarm.PlacementPreference, error) {
	strategy, arg, ok := strings.Cut(value, "=")
	if !ok || strategy == "" {
		return swarm.PlacementPreference{}, fmt.Errorf("%w: placement preference must be of the format \"<strategy>=<arg>\"", ErrInvalidServiceSpec)
	}
	if strategy != "spread" {
		return swarm.PlacementPreference{}, fmt.Errorf("%w: unsupported placement preference %s (only spread is supported)", ErrInvalidServiceSpec, strategy)
	}
	if arg == "" {
		return swarm.PlacementPreference{}, fmt.Errorf("%w: placement preference spread needs a descriptor such as node.labels.zone", ErrInvalidServiceSpec)
	}
	return swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: arg}}, nil
}

// parseReplicas parses a replica count (--replicas, scale's N=K).
func parseReplicas(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		why := "must be a non-negative integer"
		if strings.HasPrefix(s, "-") {
			why = "must not be negative"
		}
		return 0, fmt.Errorf("invalid replicas value %s: %s", s, why)
	}
	return n, nil
}

// scaleTarget is one SERVICE=REPLICAS argument of `service scale`.
type scaleTarget struct {
	Service  string
	Replicas uint64
}

// parseScaleArgs parses every SERVICE=REPLICAS argument; the first bad one
// is the error, and nothing is sent.
func parseScaleArgs(args []string) ([]scaleTarget, error) {
	out := make([]scaleTarget, 0, len(args))
	for _, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok || name == "" || val == "" {
			return nil, fmt.Errorf("invalid scale specifier '%s': expected SERVICE=REPLICAS", a)
		}
		n, err := parseReplicas(val)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, scaleTarget{Service: name, Replicas: n})
	}
	return out, nil
}

// parseServicePorts turns one --publish value into swarm port configs.
// Short syntax "[published:]target[/proto]" (ranges allowed) and docker's
// long syntax "published=8080,target=80[,protocol=udp][,mode=host]".
func parseServicePorts(spec string) ([]swarm.PortConfig, error) {
	if strings.Contains(spec, "=") {
		return parseLongPort(spec)
	}
	maps, err := parsePortSpec(spec)
	if err != nil {
		return nil, err
	}
	out := make([]swarm.PortConfig, 0, len(maps))
	for _, m := range maps {
		if m.Binding.HostIP.IsValid() {
			return nil, fmt.Errorf("%w: hostip is not supported: %s", ErrInvalidPort, spec)
		}
		pc := swarm.PortConfig{
			Protocol:    m.Port.Proto(),
			TargetPort:  uint32(m.Port.Num()),
			PublishMode: swarm.PortConfigPublishModeIngress,
		}
		if hp := m.Binding.HostPort; hp != "" {
			n, err := strconv.ParseUint(hp, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%w: a range of published ports needs a range of target ports: %s", ErrInvalidPort, spec)
			}
			pc.PublishedPort = uint32(n)
		}
		out = append(out, pc)
	}
	return out, nil
}

func parseLongPort(spec string) ([]swarm.PortConfig, error) {
	pc := swarm.PortConfig{Protocol: network.TCP, PublishMode: swarm.PortConfigPublishModeIngress}
	for _, field := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("%w: invalid field %q: must be a key=value pair", ErrInvalidPort, field)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "published":
			n, err := parsePortNumber(v, 0)
			if err != nil {
				return nil, fmt.Errorf("%w: invalid published port %q", ErrInvalidPort, v)
			}
			pc.PublishedPort = uint32(n)
		case "target":
			n, err := parsePortNumber(v, 1)
			if err != nil {
				return nil, fmt.Errorf("%w: invalid target port %q", ErrInvalidPort, v)
			}
			pc.TargetPort = uint32(n)
		case "protocol":
			switch p := strings.ToLower(v); p {
			case "tcp", "udp", "sctp":
				pc.Protocol = network.IPProtocol(p)
			default:
				return nil, fmt.Errorf("%w: invalid protocol value %q", ErrInvalidPort, v)
			}
		case "mode":
			switch m := strings.ToLower(v); m {
			case "ingress", "host":
				pc.PublishMode = swarm.PortConfigPublishMode(m)
			default:
				return nil, fmt.Errorf("%w: invalid publish mode value (%s): must be either \"ingress\" or \"host\"", ErrInvalidPort, v)
			}
		default:
			return nil, fmt.Errorf("%w: invalid field key %s", ErrInvalidPort, k)
		}
	}
	if pc.TargetPort == 0 {
		return nil, fmt.Errorf("%w: missing mandatory field \"target\"", ErrInvalidPort)
	}
	return []swarm.PortConfig{pc}, nil
}

// parsePublishList parses every --publish value, in order.
func parsePublishList(specs []string) ([]swarm.PortConfig, error) {
	var out []swarm.PortConfig
	for _, s := range specs {
		pcs, err := parseServicePorts(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pcs...)
	}
	return out, nil
}

// parseKVMap turns K=V flag values (labels) into a map; docker sends an
// empty map, not null, when there are none.
func parseKVMap(vals []string) (map[string]string, error) {
	out := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, _ := strings.Cut(v, "=")
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("invalid label: %q: empty name", v)
		}
		out[k] = val
	}
	return out, nil
}

// parseRestartCondition accepts the three conditions swarm knows.
func parseRestartCondition(s string) (swarm.RestartPolicyCondition, error) {
	switch c := swarm.RestartPolicyCondition(s); c {
	case swarm.RestartPolicyConditionNone, swarm.RestartPolicyConditionOnFailure, swarm.RestartPolicyConditionAny:
		return c, nil
	}
	return "", fmt.Errorf("%w: invalid restart condition %q: must be none, on-failure or any", ErrInvalidServiceSpec, s)
}

// parseAvailability accepts a node availability, any case.
func parseAvailability(s string) (swarm.NodeAvailability, error) {
	switch a := swarm.NodeAvailability(strings.ToLower(s)); a {
	case swarm.NodeAvailabilityActive, swarm.NodeAvailabilityPause, swarm.NodeAvailabilityDrain:
		return a, nil
	}
	return "", fmt.Errorf("invalid availability %q, only active, pause and drain are supported", s)
}

// durationPtr is a pflag.Value for optional non-negative durations
// (--restart-delay, --restart-window, --stop-grace-period).
type durationPtr struct{ v *time.Duration }

func (d *durationPtr) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return errors.New("duration cannot be negative")
	}
	d.v = &v
	return nil
}

func (d *durationPtr) String() string {
	if d.v == nil {
		return ""
	}
	return d.v.String()
}

func (d *durationPtr) Type() string { return "duration" }

// uint64Ptr is a pflag.Value for optional counts (--replicas,
// --restart-max-attempts); unset stays nil so the daemon's default applies.
type uint64Ptr struct {
	v    *uint64
	name string
}

func (u *uint64Ptr) Set(s string) error {
	if u.name == "replicas" {
		n, err := parseReplicas(s)
		if err != nil {
			return err
		}
		u.v = &n
		return nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid value %s: must be a non-negative integer", s)
	}
	u.v = &n
	return nil
}

func (u *uint64Ptr) String() string {
	if u.v == nil {
		return ""
	}
	return strconv.FormatUint(*u.v, 10)
}

func (u *uint64Ptr) Type() string { return "uint" }

// sortNetworks orders attachments by target, as docker sends them.
func sortNetworks(n []swarm.NetworkAttachmentConfig) {
	sort.Slice(n, func(i, j int) bool { return n[i].Target < n[j].Target })
}

// parseServiceMounts parses service create's --mount values (docker's
// --mount syntax); two mounts at one target are refused here, before a
// service is made.
func parseServiceMounts(vals []string) ([]mount.Mount, error) {
	var out []mount.Mount
	seen := map[string]bool{}
	for _, v := range vals {
		m, err := parseMount(v)
		if err != nil {
			return nil, err
		}
		if seen[m.Target] {
			return nil, fmt.Errorf("%w: duplicate mount target %s", ErrInvalidServiceSpec, m.Target)
		}
		seen[m.Target] = true
		out = append(out, m)
	}
	return out, nil
}

// updateServiceMounts applies service update's --mount-rm (by target) and
// --mount-add (which replaces a mount at the same target), as docker does.
func updateServiceMounts(cur []mount.Mount, add, rm []string) ([]mount.Mount, error) {
	added, err := parseServiceMounts(add)
	if err != nil {
		return nil, err
	}
	drop := map[string]bool{}
	for _, t := range rm {
		drop[t] = true
	}
	for _, m := range added {
		drop[m.Target] = true
	}
	var out []mount.Mount
	for _, m := range cur {
		if !drop[m.Target] {
			out = append(out, m)
		}
	}
	return append(out, added...), nil
}

// parseServiceNetwork reads a --network value: NAME[,alias=A...] or, as
// docker, name=NAME[,alias=A...] (target= too). Driver options are
// refused: overlay tasks take none.
func parseServiceNetwork(v string) (swarm.NetworkAttachmentConfig, error) {
	var n swarm.NetworkAttachmentConfig
	for i, f := range strings.Split(v, ",") {
		key, val, ok := strings.Cut(f, "=")
		switch {
		case !ok && i == 0:
			n.Target = f
		case ok && (key == "name" || key == "target"):
			n.Target = val
		case ok && key == "alias" && val != "":
			n.Aliases = append(n.Aliases, val)
		default:
			return n, fmt.Errorf("%w: invalid --network %q: want NAME[,alias=ALIAS]", ErrInvalidServiceSpec, v)
		}
	}
	if n.Target == "" {
		return n, fmt.Errorf("%w: invalid --network %q: no network name", ErrInvalidServiceSpec, v)
	}
	return n, nil
}
