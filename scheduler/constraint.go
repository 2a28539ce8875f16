package scheduler

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/shoal-project/shoal/api"
)

// Operator is a constraint's comparison.
type Operator int

const (
	// Eq is "==".
	Eq Operator = iota
	// Neq is "!=".
	Neq
)

func (o Operator) String() string {
	if o == Neq {
		return "!="
	}
	return "=="
}

// Constraint is one parsed placement constraint, such as node.labels.az==a.
type Constraint struct {
	// Key is the left side as written (node.labels.AZ keeps the label's case).
	Key string
	Op  Operator
	// Value is the right side, trimmed. Matching ignores case, as Swarm does.
	Value string

	kind  keyKind
	label string       // for node.labels.* and engine.labels.*
	cidr  netip.Prefix // for node.ip
}

type keyKind int

const (
	keyID keyKind = iota
	keyHostname
	keyRole
	keyIP
	keyOS
	keyArch
	keyNodeLabel
	keyEngineLabel
)

const (
	nodeLabelPrefix   = "node.labels."
	engineLabelPrefix = "engine.labels."
	knownKeys         = "node.id, node.hostname, node.role, node.ip, node.platform.os, node.platform.arch, node.labels.<name>, engine.labels.<name>"
)

// ParseConstraint parses "key==value" or "key!=value". Keys are node.id,
// node.hostname, node.role (manager|worker), node.ip (an address or CIDR),
// node.platform.os, node.platform.arch, node.labels.<name> (the node's spec
// labels, set by `node update --label-add`) and engine.labels.<name> (labels
// the node's engine reports). The error wraps api.ErrInvalidArgument and says
// what is wrong in one line, for the control API to return at create time.
func ParseConstraint(s string) (Constraint, error) {
	bad := func(format string, args ...any) (Constraint, error) {
		return Constraint{}, api.Wrap(api.ErrInvalidArgument,
			fmt.Errorf("constraint %q: %s", s, fmt.Sprintf(format, args...)))
	}
	var c Constraint
	i, j := strings.Index(s, "=="), strings.Index(s, "!=")
	switch {
	case i < 0 && j < 0:
		return bad("expected key==value or key!=value")
	case j >= 0 && (i < 0 || j < i):
		c.Op, i = Neq, j
	default:
		c.Op = Eq
	}
	c.Key = strings.TrimSpace(s[:i])
	c.Value = strings.TrimSpace(s[i+2:])
	if c.Key == "" {
		return bad("missing key")
	}
	if c.Value == "" {
		return bad("missing value")
	}
	if strings.Contains(c.Value, "==") || strings.Contains(c.Value, "!=") {
		return bad("more than one operator")
	}
	lower := strings.ToLower(c.Key)
	switch {
	case lower == "node.id":
		c.kind = keyID
	case lower == "node.hostname":
		c.kind = keyHostname
	case lower == "node.role":
		c.kind = keyRole
		if v := strings.ToLower(c.Value); v != "manager" && v != "worker" {
			return bad("node.role is manager or worker, not %q", c.Value)
		}
	case lower == "node.ip":
		c.kind = keyIP
		if p, err := netip.ParsePrefix(c.Value); err == nil {
			c.cidr = p.Masked()
		} else if a, err := netip.ParseAddr(c.Value); err == nil {
			c.cidr = netip.PrefixFrom(a, a.BitLen())
		} else {
			return bad("node.ip wants an IP address or CIDR, not %q", c.Value)
		}
	case lower == "node.platform.os":
		c.kind = keyOS
	case lower == "node.platform.arch":
		c.kind = keyArch
	case strings.HasPrefix(lower, nodeLabelPrefix):
		c.kind, c.label = keyNodeLabel, c.Key[len(nodeLabelPrefix):]
	case strings.HasPrefix(lower, engineLabelPrefix):
		c.kind, c.label = keyEngineLabel, c.Key[len(engineLabelPrefix):]
	default:
		return bad("unknown key %q (known: %s)", c.Key, knownKeys)
	}
	if (c.kind == keyNodeLabel || c.kind == keyEngineLabel) && c.label == "" {
		return bad("missing label name after %q", c.Key)
	}
	return c, nil
}

// ParseConstraints parses every constraint; the first error is returned.
func ParseConstraints(ss []string) ([]Constraint, error) {
	out := make([]Constraint, 0, len(ss))
	for _, s := range ss {
		c, err := ParseConstraint(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// String renders the constraint in its canonical form.
func (c Constraint) String() string { return c.Key + c.Op.String() + c.Value }

// Match reports whether node n satisfies the constraint. A missing label is
// the empty string: it fails == and passes !=.
func (c Constraint) Match(n *api.Node) bool {
	var have string
	switch c.kind {
	case keyID:
		have = n.GetId()
	case keyHostname:
		have = n.GetDescription().GetHostname()
		if have == "" {
			have = n.GetSpec().GetAnnotations().GetName()
		}
	case keyRole:
		have = "worker"
		if n.GetRole() == api.NodeRole_MANAGER {
			have = "manager"
		}
	case keyIP:
		addr := n.GetStatus().GetAddr()
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			addr = ap.Addr().String()
		}
		a, err := netip.ParseAddr(addr)
		in := err == nil && c.cidr.Contains(a.Unmap())
		return in == (c.Op == Eq)
	case keyOS:
		have = n.GetDescription().GetPlatform().GetOs()
	case keyArch:
		have = n.GetDescription().GetPlatform().GetArchitecture()
	case keyNodeLabel:
		have = n.GetSpec().GetAnnotations().GetLabels()[c.label]
	case keyEngineLabel:
		have = n.GetDescription().GetEngine().GetLabels()[c.label]
	}
	return strings.EqualFold(have, c.Value) == (c.Op == Eq)
}

// preference is a parsed spread descriptor: where the label is read from.
type preference struct {
	engine bool
	label  string
}

func (p preference) value(n *api.Node) string {
	if p.engine {
		return n.GetDescription().GetEngine().GetLabels()[p.label]
	}
	return n.GetSpec().GetAnnotations().GetLabels()[p.label]
}

func parsePreference(pp *api.PlacementPreference) (preference, error) {
	sp := pp.GetSpread()
	if sp == nil {
		return preference{}, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("placement preference: only spread is supported"))
	}
	d := strings.TrimSpace(sp.GetSpreadDescriptor())
	lower := strings.ToLower(d)
	switch {
	case strings.HasPrefix(lower, nodeLabelPrefix) && len(d) > len(nodeLabelPrefix):
		return preference{label: d[len(nodeLabelPrefix):]}, nil
	case strings.HasPrefix(lower, engineLabelPrefix) && len(d) > len(engineLabelPrefix):
		return preference{engine: true, label: d[len(engineLabelPrefix):]}, nil
	}
	return preference{}, api.Wrap(api.ErrInvalidArgument,
		fmt.Errorf("placement preference spread=%q: want node.labels.<name> or engine.labels.<name>", d))
}

// ValidatePlacement checks a task template's placement as the scheduler will
// read it: every constraint parses and every preference is a spread over a
// node or engine label. The control API calls it when a service is created or
// updated, so a bad spec is refused instead of leaving tasks pending.
func ValidatePlacement(p *api.Placement) error {
	if _, err := ParseConstraints(p.GetConstraints()); err != nil {
		return err
	}
	for _, pp := range p.GetPreferences() {
		if _, err := parsePreference(pp); err != nil {
			return err
		}
	}
	return nil
}
