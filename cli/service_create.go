package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serviceOptions are the flags of `service create` that make its spec.
type serviceOptions struct {
	name, mode                      string
	replicas                        uint64Ptr
	maxPerNode                      uint64
	constraints, prefs              []string
	reserveCPU, limitCPU            nanoCPUs
	reserveMem, limitMem            memBytes
	limitPids                       int64
	env, envFiles                   []string
	labels, containerLabels         []string
	networks, publish               []string
	restartCondition                string
	restartAttempts                 uint64Ptr
	restartDelay, restartWindow     durationPtr
	stopGrace                       durationPtr
	workdir, user, hostname, signal string
	tty, readOnly, init             bool
	endpointMode                    string
	rollout                         rolloutFlags
	wait                            waitFlags
	health                          healthOptions
	mounts                          []string
	capAdd, capDrop, hosts          []string
	secrets                         secretOpt
	configs                         configOpt
	image                           serviceImageFlags
}

// tagServiceImage names the service's image as the daemon is to get it,
// as the docker CLI's client library does before a create or an update: in
// its familiar form, tagged :latest when it has neither tag nor digest. A
// name that does not parse is left to the daemon to refuse.
func tagServiceImage(spec *swarm.ServiceSpec) {
	tag := func(image *string) {
		if r, err := parseImageRef(*image); err == nil {
			*image = r.WithDefaultTag().Familiar()
		}
	}
	switch tt := &spec.TaskTemplate; {
	case tt.ContainerSpec != nil:
		tag(&tt.ContainerSpec.Image)
	case tt.PluginSpec != nil:
		tag(&tt.PluginSpec.Remote)
	}
}

// waitFlags are the flags every converging command shares.
type waitFlags struct {
	detach, quiet bool
	timeout       time.Duration
}

func addWaitFlags(fl *pflag.FlagSet, w *waitFlags, quiet bool) {
	fl.BoolVarP(&w.detach, "detach", "d", false, "Exit immediately instead of waiting for the service to converge")
	if quiet {
		fl.BoolVarP(&w.quiet, "quiet", "q", false, "Suppress progress output")
	}
	fl.DurationVar(&w.timeout, "converge-timeout", 60*time.Second, "Give up waiting when the service makes no progress for this long")
}

func (w waitFlags) options(cmd *cobra.Command) waitOptions {
	return waitOptions{
		poll:    150 * time.Millisecond,
		timeout: w.timeout,
		verify:  verifyWindow,
		tty:     isTerminal(cmd.OutOrStdout()),
		quiet:   w.quiet,
	}
}

func addServiceResourceFlags(fl *pflag.FlagSet, reserveCPU, limitCPU *nanoCPUs, reserveMem, limitMem *memBytes) {
	fl.Var(limitCPU, "limit-cpu", "Limit CPUs")
	fl.Var(limitMem, "limit-memory", "Limit Memory")
	fl.Var(reserveCPU, "reserve-cpu", "Reserve CPUs")
	fl.Var(reserveMem, "reserve-memory", "Reserve Memory")
}

func newServiceCreateCommand() *cobra.Command {
	o := &serviceOptions{replicas: uint64Ptr{name: "replicas"}}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new service",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := o.spec(cmd.Flags(), args, os.LookupEnv)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			// Networks are named by ID in a spec: resolve names as docker does.
			for i, n := range spec.TaskTemplate.Networks {
				nw, err := c.NetworkInspect(ctx, n.Target, "swarm")
				if err != nil {
					return c.apiError(err)
				}
				spec.TaskTemplate.Networks[i].Target = nw.ID
			}
			sortNetworks(spec.TaskTemplate.Networks)
			cs := spec.TaskTemplate.ContainerSpec
			// So are secrets and configs.
			if err := resolveServiceFiles(ctx, c, cs); err != nil {
				return err
			}
			auth, err := o.image.registryAuth(cs.Image)
			if err != nil {
				return err
			}
			if cs.Image, err = o.image.pin(ctx, c, cs.Image, auth, streamsOf(cmd).err); err != nil {
				return err
			}
			tagServiceImage(&spec)
			res, err := c.ServiceCreate(ctx, spec, auth)
			if err != nil {
				return c.apiError(err)
			}
			s := streamsOf(cmd)
			for _, w := range res.Warnings {
				fmt.Fprintln(s.err, w)
			}
			fmt.Fprintln(s.out, res.ID)
			if o.wait.detach {
				return nil
			}
			return c.apiError(waitOnService(ctx, c.Client, res.ID, s.out, o.wait.options(cmd)))
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVar(&o.name, "name", "", "Service name")
	fl.StringVar(&o.mode, "mode", "replicated", `Service mode ("replicated", "global")`)
	fl.Var(&o.replicas, "replicas", "Number of tasks")
	fl.Uint64Var(&o.maxPerNode, "replicas-max-per-node", 0, "Maximum number of tasks per node (default 0 = unlimited)")
	fl.Var((*stringArray)(&o.constraints), "constraint", "Placement constraints")
	fl.Var((*stringArray)(&o.prefs), "placement-pref", "Add a placement preference")
	addServiceResourceFlags(fl, &o.reserveCPU, &o.limitCPU, &o.reserveMem, &o.limitMem)
	fl.Int64Var(&o.limitPids, "limit-pids", 0, "Limit maximum number of processes (default 0 = unlimited)")
	fl.VarP((*stringArray)(&o.env), "env", "e", "Set environment variables")
	fl.Var((*stringArray)(&o.envFiles), "env-file", "Read in a file of environment variables")
	fl.VarP((*stringArray)(&o.labels), "label", "l", "Service labels")
	fl.Var((*stringArray)(&o.containerLabels), "container-label", "Container labels")
	fl.Var((*stringArray)(&o.networks), "network", "Network attachments (NAME[,alias=ALIAS])")
	fl.VarP((*stringArray)(&o.publish), "publish", "p", "Publish a port as a node port")
	fl.StringVar(&o.restartCondition, "restart-condition", "", `Restart when condition is met ("none", "on-failure", "any") (default "any")`)
	fl.Var(&o.restartAttempts, "restart-max-attempts", "Maximum number of restarts before giving up")
	fl.Var(&o.restartDelay, "restart-delay", "Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)")
	fl.Var(&o.restartWindow, "restart-window", "Window used to evaluate the restart policy (ns|us|ms|s|m|h)")
	fl.Var(&o.stopGrace, "stop-grace-period", "Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)")
	fl.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	fl.StringVarP(&o.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fl.StringVar(&o.hostname, "hostname", "", "Container hostname")
	fl.StringVar(&o.signal, "stop-signal", "", "Signal to stop the container")
	fl.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	fl.BoolVar(&o.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	fl.Var((*stringArray)(&o.mounts), "mount", "Attach a filesystem mount to the service")
	fl.Var(&o.secrets, "secret", "Specify secrets to expose to the service")
	fl.Var(&o.configs, "config", "Specify configurations to expose to the service")
	fl.BoolVar(&o.init, "init", false, "Use an init inside each service container to forward signals and reap processes")
	fl.Var((*stringArray)(&o.capAdd), "cap-add", "Add Linux capabilities")
	fl.Var((*stringArray)(&o.capDrop), "cap-drop", "Drop Linux capabilities")
	// docker's `service create --host`: -H/--host names the daemon's
	// socket in every shoal command, so this is run's name for it.
	fl.Var((*stringArray)(&o.hosts), "add-host", "Add a custom host-to-IP mapping (host:ip)")
	fl.StringVar(&o.endpointMode, "endpoint-mode", "vip", "Endpoint mode (vip or dnsrr)")
	addRolloutFlags(fl, &o.rollout, true)
	addServiceImageFlags(fl, &o.image)
	addHealthFlags(fl, &o.health)
	addWaitFlags(fl, &o.wait, true)
	return cmd
}

// spec builds the ServiceSpec docker's CLI would send for the same command
// line. lookupEnv resolves bare -e NAME values.
func (o *serviceOptions) spec(fl *pflag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (swarm.ServiceSpec, error) {
	var spec swarm.ServiceSpec
	mode, err := serviceMode(o.mode, o.replicas.v, o.maxPerNode)
	if err != nil {
		return spec, err
	}
	constraints := make([]string, 0, len(o.constraints))
	for _, c := range o.constraints {
		v, err := parseConstraint(c)
		if err != nil {
			return spec, err
		}
		constraints = append(constraints, v)
	}
	var prefs []swarm.PlacementPreference
	for _, p := range o.prefs {
		v, err := parsePlacementPref(p)
		if err != nil {
			return spec, err
		}
		prefs = append(prefs, v)
	}
	fileEnv, err := readEnvFiles(o.envFiles)
	if err != nil {
		return spec, err
	}
	flagEnv, err := parseEnvList(o.env, lookupEnv)
	if err != nil {
		return spec, err
	}
	labels, err := parseKVMap(o.labels)
	if err != nil {
		return spec, err
	}
	ctrLabels, err := parseKVMap(o.containerLabels)
	if err != nil {
		return spec, err
	}
	ports, err := parsePublishList(o.publish)
	if err != nil {
		return spec, err
	}
	restart, err := o.restartPolicy(fl)
	if err != nil {
		return spec, err
	}
	switch o.endpointMode {
	case "vip", "dnsrr":
	default:
		return spec, fmt.Errorf("%w: invalid endpoint mode %q: must be vip or dnsrr", ErrInvalidServiceSpec, o.endpointMode)
	}
	health, err := o.health.config()
	if err != nil {
		return spec, err
	}
	mounts, err := parseServiceMounts(o.mounts)
	if err != nil {
		return spec, err
	}
	// Named here, resolved to IDs by the caller.
	if err := checkSecretTargets(o.secrets.refs); err != nil {
		return spec, err
	}
	if err := checkConfigTargets(o.configs.refs); err != nil {
		return spec, err
	}
	init := o.init
	hosts, err := serviceHosts(o.hosts)
	if err != nil {
		return spec, err
	}
	ctr := &swarm.ContainerSpec{
		CapabilityAdd:   o.capAdd,
		CapabilityDrop:  o.capDrop,
		Hosts:           hosts,
		Mounts:          mounts,
		Secrets:         o.secrets.refs,
		Configs:         o.configs.refs,
		Healthcheck:     health,
		Image:           args[0],
		Args:            args[1:],
		Env:             mergeEnv(nil, append(fileEnv, flagEnv...)),
		Hostname:        o.hostname,
		Labels:          ctrLabels,
		Dir:             o.workdir,
		User:            o.user,
		StopSignal:      o.signal,
		TTY:             o.tty,
		ReadOnly:        o.readOnly,
		Init:            &init,
		DNSConfig:       &swarm.DNSConfig{},
		StopGracePeriod: o.stopGrace.v,
	}
	if len(ctr.Args) == 0 {
		ctr.Args = nil
	}
	var nets []swarm.NetworkAttachmentConfig
	for _, v := range o.networks {
		n, err := parseServiceNetwork(v)
		if err != nil {
			return spec, err
		}
		nets = append(nets, n)
	}
	spec = swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: o.name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: ctr,
			Networks:      nets,
			Resources: &swarm.ResourceRequirements{
				Limits:       &swarm.Limit{NanoCPUs: int64(o.limitCPU), MemoryBytes: int64(o.limitMem), Pids: o.limitPids},
				Reservations: &swarm.Resources{NanoCPUs: int64(o.reserveCPU), MemoryBytes: int64(o.reserveMem)},
			},
			RestartPolicy: restart,
			Placement:     &swarm.Placement{Constraints: constraints, Preferences: prefs, MaxReplicas: o.maxPerNode},
		},
		Mode:         mode,
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionMode(o.endpointMode), Ports: ports},
	}
	// As docker's: a config stays unset unless one of its flags is given,
	// and then starts from swarm's defaults.
	if err := o.rollout.apply(fl, &spec); err != nil {
		return spec, err
	}
	return spec, nil
}

// serviceMode builds the Mode of a spec from --mode and --replicas.
func serviceMode(mode string, replicas *uint64, maxPerNode uint64) (swarm.ServiceMode, error) {
	switch mode {
	case "replicated":
		return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: replicas}}, nil
	case "global":
		if replicas != nil {
			return swarm.ServiceMode{}, fmt.Errorf("%w: replicas can only be used with replicated or replicated-job mode", ErrInvalidServiceSpec)
		}
		if maxPerNode > 0 {
			return swarm.ServiceMode{}, fmt.Errorf("%w: replicas-max-per-node can only be used with replicated or replicated-job mode", ErrInvalidServiceSpec)
		}
		return swarm.ServiceMode{Global: &swarm.GlobalService{}}, nil
	}
	return swarm.ServiceMode{}, fmt.Errorf("%w: unknown mode: %s, only replicated and global supported", ErrInvalidServiceSpec, mode)
}

// restartPolicy is nil unless a --restart-* flag was given; then it starts
// from swarm's defaults (any, 5s, unlimited), as docker's does.
func (o *serviceOptions) restartPolicy(fl *pflag.FlagSet) (*swarm.RestartPolicy, error) {
	if !fl.Changed("restart-condition") && !fl.Changed("restart-max-attempts") && !fl.Changed("restart-delay") && !fl.Changed("restart-window") {
		return nil, nil
	}
	delay := 5 * time.Second
	var attempts uint64
	rp := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay, MaxAttempts: &attempts}
	if fl.Changed("restart-condition") {
		c, err := parseRestartCondition(o.restartCondition)
		if err != nil {
			return nil, err
		}
		rp.Condition = c
	}
	if o.restartAttempts.v != nil {
		rp.MaxAttempts = o.restartAttempts.v
	}
	if o.restartDelay.v != nil {
		rp.Delay = o.restartDelay.v
	}
	if o.restartWindow.v != nil {
		rp.Window = o.restartWindow.v
	}
	return rp, nil
}

// mergeEnv applies K=V values onto env in order: a later value of a
// variable replaces the earlier one, keeping the list free of duplicates.
func mergeEnv(env, add []string) []string {
	out := append([]string(nil), env...)
	for _, e := range add {
		if slices.Contains(out, e) {
			continue
		}
		k, _, _ := strings.Cut(e, "=")
		out = slices.DeleteFunc(out, func(cur string) bool { return cur == k || strings.HasPrefix(cur, k+"=") })
		out = append(out, e)
	}
	return out
}

// serviceHosts turns --host's host:ip mappings into the /etc/hosts lines
// ("ip host") a service spec carries, as the docker CLI does.
func serviceHosts(in []string) ([]string, error) {
	var out []string
	for _, h := range in {
		name, ip, ok := strings.Cut(h, ":")
		if !ok || name == "" || ip == "" {
			return nil, fmt.Errorf("invalid argument %q for \"--add-host\" flag: want host:ip", h)
		}
		out = append(out, ip+" "+name)
	}
	return out, nil
}
