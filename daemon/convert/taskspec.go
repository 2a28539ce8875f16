package convert

import (
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
)

// taskSpecToAPI converts a service's task template.
func taskSpecToAPI(t swarm.TaskSpec) (*api.TaskSpec, error) {
	switch {
	case t.PluginSpec != nil:
		return nil, notSupported("plugin services are not supported")
	case t.NetworkAttachmentSpec != nil:
		return nil, notSupported("network attachment tasks are not supported")
	}
	switch t.Runtime {
	case "", swarm.RuntimeContainer:
	default:
		return nil, notSupported("runtime %s is not supported", t.Runtime)
	}
	if !isZero(t.LogDriver) {
		return nil, notSupported("log drivers are not supported")
	}
	c, err := containerSpecToAPI(t.ContainerSpec)
	if err != nil {
		return nil, err
	}
	out := &api.TaskSpec{Container: c, ForceUpdate: t.ForceUpdate}
	if out.Resources, err = resourcesToAPI(t.Resources); err != nil {
		return nil, err
	}
	if err := containers.CheckInitPids(c.GetInit(), out.GetResources().GetLimits().GetPids()); err != nil {
		return nil, invalid("%v", err)
	}
	if out.Restart, err = restartPolicyToAPI(t.RestartPolicy); err != nil {
		return nil, err
	}
	if out.Placement, err = placementToAPI(t.Placement); err != nil {
		return nil, err
	}
	for _, n := range t.Networks {
		if len(n.DriverOpts) > 0 {
			return nil, notSupported("network %s: driver options are not supported", n.Target)
		}
		out.Networks = append(out.Networks, &api.NetworkAttachmentConfig{Target: n.Target, Aliases: copyStrings(n.Aliases)})
	}
	return out, nil
}

func resourcesToAPI(r *swarm.ResourceRequirements) (*api.ResourceRequirements, error) {
	if r == nil {
		return nil, nil
	}
	switch {
	case r.SwapBytes != nil:
		return nil, notSupported("swap limits are not supported")
	case r.MemorySwappiness != nil:
		return nil, notSupported("memory swappiness is not supported")
	}
	out := &api.ResourceRequirements{}
	if l := r.Limits; l != nil {
		if l.Pids < 0 {
			return nil, invalid("pids limit %d: want 0 (no limit) or more", l.Pids)
		}
		out.Limits = &api.Resources{NanoCpus: l.NanoCPUs, MemoryBytes: l.MemoryBytes, Pids: l.Pids}
	}
	if res := r.Reservations; res != nil {
		if len(res.GenericResources) > 0 {
			return nil, notSupported("generic resources are not supported")
		}
		out.Reservations = &api.Resources{NanoCpus: res.NanoCPUs, MemoryBytes: res.MemoryBytes}
	}
	return out, nil
}

func restartPolicyToAPI(p *swarm.RestartPolicy) (*api.RestartPolicy, error) {
	if p == nil {
		return nil, nil
	}
	out := &api.RestartPolicy{Delay: durationPtrToAPI(p.Delay), Window: durationPtrToAPI(p.Window)}
	switch p.Condition {
	case swarm.RestartPolicyConditionAny, "":
		out.Condition = api.RestartPolicy_ANY
	case swarm.RestartPolicyConditionOnFailure:
		out.Condition = api.RestartPolicy_ON_FAILURE
	case swarm.RestartPolicyConditionNone:
		out.Condition = api.RestartPolicy_NONE
	default:
		return nil, invalid("invalid restart condition %q: must be none, on-failure or any", p.Condition)
	}
	if p.MaxAttempts != nil {
		out.MaxAttempts = *p.MaxAttempts
	}
	return out, nil
}

func placementToAPI(p *swarm.Placement) (*api.Placement, error) {
	if p == nil {
		return nil, nil
	}
	out := &api.Placement{Constraints: copyStrings(p.Constraints), MaxReplicas: p.MaxReplicas}
	for _, pref := range p.Preferences {
		if pref.Spread == nil {
			return nil, notSupported("placement preferences other than spread are not supported")
		}
		out.Preferences = append(out.Preferences, &api.PlacementPreference{
			Preference: &api.PlacementPreference_Spread{Spread: &api.SpreadOver{SpreadDescriptor: pref.Spread.SpreadDescriptor}},
		})
	}
	for _, pl := range p.Platforms {
		out.Platforms = append(out.Platforms, &api.Platform{Architecture: pl.Architecture, Os: pl.OS})
	}
	return out, nil
}

// TaskSpecToSwarm is a task template (a service's, or the one a task was
// made from) as Docker shows it. Runtime is "container", as dockerd reports.
func TaskSpecToSwarm(t *api.TaskSpec) swarm.TaskSpec {
	if t == nil {
		return swarm.TaskSpec{}
	}
	out := swarm.TaskSpec{ContainerSpec: containerSpecToSwarm(t.GetContainer()), ForceUpdate: t.GetForceUpdate()}
	if out.ContainerSpec != nil {
		out.Runtime = swarm.RuntimeContainer
	}
	if r := t.GetResources(); r != nil {
		out.Resources = &swarm.ResourceRequirements{}
		if l := r.GetLimits(); l != nil {
			out.Resources.Limits = &swarm.Limit{NanoCPUs: l.GetNanoCpus(), MemoryBytes: l.GetMemoryBytes(), Pids: l.GetPids()}
		}
		if res := r.GetReservations(); res != nil {
			out.Resources.Reservations = &swarm.Resources{NanoCPUs: res.GetNanoCpus(), MemoryBytes: res.GetMemoryBytes()}
		}
	}
	if p := t.GetRestart(); p != nil {
		attempts := p.GetMaxAttempts()
		out.RestartPolicy = &swarm.RestartPolicy{
			Condition:   restartConditionToSwarm(p.GetCondition()),
			Delay:       durationPtrToSwarm(p.GetDelay()),
			MaxAttempts: &attempts,
			Window:      durationPtrToSwarm(p.GetWindow()),
		}
	}
	if p := t.GetPlacement(); p != nil {
		out.Placement = &swarm.Placement{Constraints: copyStrings(p.GetConstraints()), MaxReplicas: p.GetMaxReplicas()}
		for _, pref := range p.GetPreferences() {
			if s := pref.GetSpread(); s != nil {
				out.Placement.Preferences = append(out.Placement.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: s.GetSpreadDescriptor()}})
			}
		}
		for _, pl := range p.GetPlatforms() {
			out.Placement.Platforms = append(out.Placement.Platforms, swarm.Platform{Architecture: pl.GetArchitecture(), OS: pl.GetOs()})
		}
	}
	for _, n := range t.GetNetworks() {
		out.Networks = append(out.Networks, swarm.NetworkAttachmentConfig{Target: n.GetTarget(), Aliases: copyStrings(n.GetAliases())})
	}
	return out
}

func restartConditionToSwarm(c api.RestartPolicy_Condition) swarm.RestartPolicyCondition {
	switch c {
	case api.RestartPolicy_ON_FAILURE:
		return swarm.RestartPolicyConditionOnFailure
	case api.RestartPolicy_NONE:
		return swarm.RestartPolicyConditionNone
	}
	return swarm.RestartPolicyConditionAny
}
