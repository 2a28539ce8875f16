package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serviceUpdateOptions are the flags of `service update`.
type serviceUpdateOptions struct {
	replicas                    uint64Ptr
	image                       string
	envAdd, envRm               []string
	mountAdd, mountRm           []string
	constraintAdd, constraintRm []string
	labelAdd, labelRm           []string
	publishAdd, publishRm       []string
	networkAdd, networkRm       []string
	secretAdd                   secretOpt
	configAdd                   configOpt
	secretRm, configRm          []string
	reserveCPU, limitCPU        nanoCPUs
	reserveMem, limitMem        memBytes
	force                       bool
	args                        string
	restartCondition            string
	rollout                     rolloutFlags
	rollback                    bool
	wait                        waitFlags
	health                      healthOptions
	imageFlags                  serviceImageFlags
}

func newServiceUpdateCommand() *cobra.Command {
	o := &serviceUpdateOptions{replicas: uint64Ptr{name: "replicas"}}
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] SERVICE",
		Short: "Update a service",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.rollback {
				if err := onlyWaitFlags(cmd, "rollback"); err != nil {
					return err
				}
				return rollbackService(cmd, args[0], o.wait)
			}
			if err := o.rollout.check(cmd.Flags()); err != nil {
				return err
			}
			// Two added files at one target are refused before any request.
			if err := checkSecretTargets(o.secretAdd.refs); err != nil {
				return err
			}
			if err := checkConfigTargets(o.configAdd.refs); err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			svc, raw, err := c.ServiceInspect(ctx, args[0], false)
			if err != nil {
				return c.apiError(err)
			}
			spec := svc.Spec
			if err := o.apply(cmd.Flags(), &spec, os.LookupEnv); err != nil {
				return err
			}
			if err := o.applyNetworks(ctx, c, &spec); err != nil {
				return err
			}
			if err := o.applyFiles(ctx, c, cmd.Flags(), &spec); err != nil {
				return err
			}
			cs := spec.TaskTemplate.ContainerSpec
			auth, err := o.imageFlags.registryAuth(cs.Image)
			if err != nil {
				return err
			}
			// Only a new image is resolved, as docker's update does.
			if cmd.Flags().Changed("image") {
				if cs.Image, err = o.imageFlags.pin(ctx, c, cs.Image, auth, streamsOf(cmd).err); err != nil {
					return err
				}
			}
			tagServiceImage(&spec)
			up, err := sendServiceUpdate(ctx, c, svc.ID, svc.Version, raw, spec, apiclient.ServiceUpdateOptions{RegistryAuth: auth})
			if err != nil {
				return c.apiError(err)
			}
			s := streamsOf(cmd)
			for _, w := range up.Warnings {
				fmt.Fprintln(s.err, w)
			}
			fmt.Fprintln(s.out, args[0])
			if o.wait.detach {
				return nil
			}
			wo := o.wait.options(cmd)
			wo.before, wo.name = svc.UpdateStatus, args[0]
			return c.apiError(waitOnService(ctx, c.Client, svc.ID, s.out, wo))
		},
	}
	fl := cmd.Flags()
	fl.Var(&o.replicas, "replicas", "Number of tasks")
	fl.StringVar(&o.image, "image", "", "Service image tag")
	fl.Var((*stringArray)(&o.envAdd), "env-add", "Add or update an environment variable")
	fl.Var((*stringArray)(&o.envRm), "env-rm", "Remove an environment variable")
	fl.Var((*stringArray)(&o.mountAdd), "mount-add", "Add or update a mount on a service")
	fl.Var((*stringArray)(&o.mountRm), "mount-rm", "Remove a mount by its target path")
	fl.Var((*stringArray)(&o.constraintAdd), "constraint-add", "Add or update a placement constraint")
	fl.Var((*stringArray)(&o.constraintRm), "constraint-rm", "Remove a constraint")
	fl.Var((*stringArray)(&o.labelAdd), "label-add", "Add or update a service label")
	fl.Var((*stringArray)(&o.labelRm), "label-rm", "Remove a label by its key")
	fl.Var((*stringArray)(&o.publishAdd), "publish-add", "Add or update a published port")
	fl.Var((*stringArray)(&o.publishRm), "publish-rm", "Remove a published port by its target port")
	fl.Var((*stringArray)(&o.networkAdd), "network-add", "Add a network (NAME[,alias=ALIAS] or name=NAME,alias=ALIAS)")
	fl.Var((*stringArray)(&o.networkRm), "network-rm", "Remove a network by name or ID")
	fl.Var(&o.secretAdd, "secret-add", "Add or update a secret on a service")
	fl.Var((*stringArray)(&o.secretRm), "secret-rm", "Remove a secret")
	fl.Var(&o.configAdd, "config-add", "Add or update a config file on a service")
	fl.Var((*stringArray)(&o.configRm), "config-rm", "Remove a configuration file")
	addServiceResourceFlags(fl, &o.reserveCPU, &o.limitCPU, &o.reserveMem, &o.limitMem)
	fl.BoolVar(&o.rollback, "rollback", false, "Rollback to previous specification")
	fl.BoolVar(&o.force, "force", false, "Force update even if no changes require it")
	fl.StringVar(&o.args, "args", "", "Service command args")
	addHealthFlags(fl, &o.health)
	fl.StringVar(&o.restartCondition, "restart-condition", "", `Restart when condition is met ("none", "on-failure", "any")`)
	addRolloutFlags(fl, &o.rollout, false)
	addServiceImageFlags(fl, &o.imageFlags)
	addWaitFlags(fl, &o.wait, true)
	return cmd
}

// apply merges the changed flags into spec, as docker's update does.
func (o *serviceUpdateOptions) apply(fl *pflag.FlagSet, spec *swarm.ServiceSpec, lookupEnv func(string) (string, bool)) error {
	if fl.Changed("replicas") {
		if spec.Mode.Replicated == nil {
			return errors.New("replicas can only be used with replicated or replicated-job mode")
		}
		spec.Mode.Replicated.Replicas = o.replicas.v
	}
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		cs = &swarm.ContainerSpec{}
		spec.TaskTemplate.ContainerSpec = cs
	}
	if fl.Changed("image") {
		if o.image == "" {
			return fmt.Errorf("%w: --image must not be empty", ErrInvalidServiceSpec)
		}
		cs.Image = o.image
	}
	if fl.Changed("args") {
		cs.Args = strings.Fields(o.args)
	}
	if fl.Changed("mount-add") || fl.Changed("mount-rm") {
		mounts, err := updateServiceMounts(cs.Mounts, o.mountAdd, o.mountRm)
		if err != nil {
			return err
		}
		cs.Mounts = mounts
	}
	if fl.Changed("env-add") || fl.Changed("env-rm") {
		add, err := parseEnvList(o.envAdd, lookupEnv)
		if err != nil {
			return err
		}
		env := cs.Env[:0:0]
		for _, e := range cs.Env {
			k, _, _ := strings.Cut(e, "=")
			if !containsString(o.envRm, k) {
				env = append(env, e)
			}
		}
		cs.Env = mergeEnv(env, add)
	}
	if fl.Changed("constraint-add") || fl.Changed("constraint-rm") {
		if spec.TaskTemplate.Placement == nil {
			spec.TaskTemplate.Placement = &swarm.Placement{}
		}
		pl := spec.TaskTemplate.Placement
		for _, c := range o.constraintAdd {
			if _, err := parseConstraint(c); err != nil {
				return err
			}
		}
		all := append(append([]string(nil), pl.Constraints...), o.constraintAdd...)
		kept := []string{}
		for _, c := range all {
			if !containsString(o.constraintRm, c) && !containsString(kept, c) {
				kept = append(kept, c)
			}
		}
		sort.Strings(kept)
		pl.Constraints = kept
	}
	if fl.Changed("label-add") || fl.Changed("label-rm") {
		add, err := parseKVMap(o.labelAdd)
		if err != nil {
			return err
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		for _, k := range o.labelRm {
			delete(spec.Labels, k)
		}
		for k, v := range add {
			spec.Labels[k] = v
		}
	}
	if fl.Changed("publish-add") || fl.Changed("publish-rm") {
		add, err := parsePublishList(o.publishAdd)
		if err != nil {
			return err
		}
		if spec.EndpointSpec == nil {
			spec.EndpointSpec = &swarm.EndpointSpec{}
		}
		var kept []swarm.PortConfig
		for _, p := range spec.EndpointSpec.Ports {
			if removedPort(o.publishRm, p) {
				continue
			}
			replaced := false
			for _, a := range add {
				if a.PublishedPort != 0 && a.PublishedPort == p.PublishedPort && a.Protocol == p.Protocol {
					replaced = true
				}
			}
			if !replaced {
				kept = append(kept, p)
			}
		}
		spec.EndpointSpec.Ports = append(kept, add...)
	}
	if fl.Changed("limit-cpu") || fl.Changed("limit-memory") || fl.Changed("reserve-cpu") || fl.Changed("reserve-memory") {
		if spec.TaskTemplate.Resources == nil {
			spec.TaskTemplate.Resources = &swarm.ResourceRequirements{}
		}
		r := spec.TaskTemplate.Resources
		if r.Limits == nil {
			r.Limits = &swarm.Limit{}
		}
		if r.Reservations == nil {
			r.Reservations = &swarm.Resources{}
		}
		if fl.Changed("limit-cpu") {
			r.Limits.NanoCPUs = int64(o.limitCPU)
		}
		if fl.Changed("limit-memory") {
			r.Limits.MemoryBytes = int64(o.limitMem)
		}
		if fl.Changed("reserve-cpu") {
			r.Reservations.NanoCPUs = int64(o.reserveCPU)
		}
		if fl.Changed("reserve-memory") {
			r.Reservations.MemoryBytes = int64(o.reserveMem)
		}
	}
	if fl.Changed("restart-condition") {
		c, err := parseRestartCondition(o.restartCondition)
		if err != nil {
			return err
		}
		if spec.TaskTemplate.RestartPolicy == nil {
			spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{}
		}
		spec.TaskTemplate.RestartPolicy.Condition = c
	}
	if spec.TaskTemplate.ContainerSpec != nil {
		hc, err := o.health.update(fl, spec.TaskTemplate.ContainerSpec.Healthcheck)
		if err != nil {
			return err
		}
		spec.TaskTemplate.ContainerSpec.Healthcheck = hc
	}
	if err := o.rollout.apply(fl, spec); err != nil {
		return err
	}
	if o.force {
		spec.TaskTemplate.ForceUpdate++
	}
	return nil
}

// removedPort reports whether --publish-rm names p: "80", "80/udp" (the
// target port) or "8080:80".
func removedPort(rms []string, p swarm.PortConfig) bool {
	for _, rm := range rms {
		spec, proto, _ := strings.Cut(rm, "/")
		if proto == "" {
			proto = "tcp"
		}
		if proto != string(p.Protocol) {
			continue
		}
		if pub, tgt, ok := strings.Cut(spec, ":"); ok {
			if pub == strconv.Itoa(int(p.PublishedPort)) && tgt == strconv.Itoa(int(p.TargetPort)) {
				return true
			}
			continue
		}
		if spec == strconv.Itoa(int(p.TargetPort)) {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// serviceLogsOptions are the flags of `service logs`.
type serviceLogsOptions struct {
	follow, timestamps, noTrunc, noTaskIDs, noResolve, raw, details bool
	tail, since                                                     string
}

func newServiceLogsCommand() *cobra.Command {
	var o serviceLogsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] SERVICE|TASK",
		Short: "Fetch the logs of a service or task",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			return serviceLogs(cmd, c, args[0], o)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&o.follow, "follow", "f", false, "Follow log output")
	fl.BoolVarP(&o.timestamps, "timestamps", "t", false, "Show timestamps")
	fl.StringVarP(&o.tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	fl.StringVar(&o.since, "since", "", "Show logs since timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
	fl.BoolVar(&o.noTrunc, "no-trunc", false, "Do not truncate output")
	fl.BoolVar(&o.noTaskIDs, "no-task-ids", false, "Do not include task IDs in output")
	fl.BoolVar(&o.noResolve, "no-resolve", false, "Do not map IDs to Names in output")
	fl.BoolVar(&o.raw, "raw", false, "Do not neatly format logs")
	fl.BoolVar(&o.details, "details", false, "Show extra details provided to logs")
	return cmd
}

// serviceLogs streams a service's (or one task's) logs. The daemon tags
// every line with its origin in the "details" field
// (com.docker.swarm.node.id=...,com.docker.swarm.service.id=...,
// com.docker.swarm.task.id=...), which becomes docker's
// "name.slot.taskid@node    | " prefix.
func serviceLogs(cmd *cobra.Command, c *apiClient, ref string, o serviceLogsOptions) error {
	ctx := commandContext(cmd)
	padding := 1
	var tty bool
	var rc io.ReadCloser
	lo := apiclient.ServiceLogsOptions{
		Stdout: true, Stderr: true, Since: o.since, Timestamps: o.timestamps,
		Follow: o.follow, Tail: o.tail, Details: o.details || !o.raw,
	}
	svc, _, err := c.ServiceInspect(ctx, ref, false)
	switch {
	case err == nil:
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			tty = cs.TTY
		}
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			padding = len(strconv.FormatUint(*r.Replicas, 10))
		}
		if tty && !o.raw {
			return errors.New("tty service logs only supported with --raw")
		}
		rc, err = c.ServiceLogs(ctx, ref, lo)
	case isNotFound(err):
		task, _, terr := c.TaskInspect(ctx, ref)
		if terr != nil {
			if isNotFound(terr) {
				return fmt.Errorf("no such task or service: %v", ref)
			}
			return c.apiError(terr)
		}
		if cs := task.Spec.ContainerSpec; cs != nil {
			tty = cs.TTY
		}
		padding = len(strconv.Itoa(task.Slot))
		if tty && !o.raw {
			return errors.New("tty service logs only supported with --raw")
		}
		rc, err = c.TaskLogs(ctx, ref, lo)
	}
	if err != nil {
		return c.apiError(err)
	}
	defer rc.Close()
	s := streamsOf(cmd)
	if tty {
		_, err = io.Copy(s.out, rc)
		return err
	}
	stdout, stderr := s.out, s.err
	if !o.raw {
		f := &logPrefixer{ctx: ctx, c: c, opts: o, padding: padding, cache: map[logOrigin]string{}, nodes: &nodeNamer{c: c, ctx: ctx, names: map[string]string{}}}
		stdout = &logWriter{f: f, w: s.out}
		stderr = &logWriter{f: f, w: s.err}
	}
	_, err = stdcopy.StdCopy(stdout, stderr, rc)
	return err
}

// logOrigin is where a log line comes from.
type logOrigin struct{ nodeID, serviceID, taskID string }

// parseLogDetails reads the details field of a log line: comma-separated
// key=value pairs with URL-escaped values.
func parseLogDetails(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("invalid details format: %q", s)
		}
		uk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("invalid details format: %w", err)
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("invalid details format: %w", err)
		}
		out[uk] = uv
	}
	return out, nil
}

// logPrefixer names a line's origin, caching one lookup per task.
type logPrefixer struct {
	ctx     context.Context
	c       *apiClient
	opts    serviceLogsOptions
	padding int
	cache   map[logOrigin]string
	nodes   *nodeNamer
	svcs    map[string]string
}

func (f *logPrefixer) prefix(o logOrigin) string {
	if p, ok := f.cache[o]; ok {
		return p
	}
	node, service := o.nodeID, o.serviceID
	if !f.opts.noResolve {
		node = f.nodes.name(o.nodeID)
		if f.svcs == nil {
			f.svcs = map[string]string{}
		}
		if n, ok := f.svcs[o.serviceID]; ok {
			service = n
		} else if svc, _, err := f.c.ServiceInspect(f.ctx, o.serviceID, false); err == nil {
			service = svc.Spec.Name
			f.svcs[o.serviceID] = service
		}
	}
	slot := 0
	taskID := o.taskID
	if task, _, err := f.c.TaskInspect(f.ctx, o.taskID); err == nil {
		slot = task.Slot
	}
	p := formatLogPrefix(service, slot, taskID, node, f.padding, f.opts.noTaskIDs, f.opts.noTrunc)
	f.cache[o] = p
	return p
}

// formatLogPrefix is docker's "name.slot.taskid@node" padded so that the
// "|" columns line up across slot numbers of different widths.
func formatLogPrefix(service string, slot int, taskID, node string, padding int, noTaskIDs, noTrunc bool) string {
	name := fmt.Sprintf("%s.%d", service, slot)
	if !noTaskIDs {
		if noTrunc {
			name += "." + taskID
		} else {
			name += "." + shortID(taskID)
		}
	}
	pad := padding - len(strconv.Itoa(slot))
	if pad < 0 {
		pad = 0
	}
	return name + "@" + node + strings.Repeat(" ", pad)
}

// logWriter rewrites each frame (one log line) from
// "[timestamp ]details message" to "[timestamp ]prefix    | message".
type logWriter struct {
	f *logPrefixer
	w io.Writer
}

func (lw *logWriter) Write(buf []byte) (int, error) {
	out, err := rewriteLogLine(buf, lw.f.opts.timestamps, lw.f.opts.details, lw.f.prefix)
	if err != nil {
		return 0, err
	}
	if _, err := lw.w.Write(out); err != nil {
		return 0, err
	}
	return len(buf), nil
}

// rewriteLogLine is the pure part of logWriter.
func rewriteLogLine(buf []byte, timestamps, showDetails bool, prefix func(logOrigin) string) ([]byte, error) {
	n := 2
	detailsAt := 0
	if timestamps {
		n, detailsAt = 3, 1
	}
	parts := bytes.SplitN(buf, []byte(" "), n)
	if len(parts) != n {
		return nil, fmt.Errorf("invalid context in log message: %v", string(buf))
	}
	details, err := parseLogDetails(string(parts[detailsAt]))
	if err != nil {
		return nil, err
	}
	var o logOrigin
	var ok bool
	if o.nodeID, ok = details["com.docker.swarm.node.id"]; !ok {
		return nil, fmt.Errorf("missing node id in details: %v", details)
	}
	if o.serviceID, ok = details["com.docker.swarm.service.id"]; !ok {
		return nil, fmt.Errorf("missing service id in details: %v", details)
	}
	if o.taskID, ok = details["com.docker.swarm.task.id"]; !ok {
		return nil, fmt.Errorf("missing task id in details: %v", details)
	}
	delete(details, "com.docker.swarm.node.id")
	delete(details, "com.docker.swarm.service.id")
	delete(details, "com.docker.swarm.task.id")
	var out []byte
	if timestamps {
		out = append(out, parts[0]...)
		out = append(out, ' ')
	}
	out = append(out, prefix(o)+"    | "...)
	if showDetails {
		var kv []string
		for k, v := range details {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		out = append(out, strings.Join(kv, ",")...)
		out = append(out, ' ')
	}
	out = append(out, parts[detailsAt+1]...)
	return out, nil
}

// applyNetworks applies --network-add and --network-rm. The spec names
// networks by ID, so a name is resolved through the API (as docker's CLI
// does); adding a network the service is on already is an error, removing
// one it is not on is not.
func (o *serviceUpdateOptions) applyNetworks(ctx context.Context, c *apiClient, spec *swarm.ServiceSpec) error {
	if len(o.networkAdd) == 0 && len(o.networkRm) == 0 {
		return nil
	}
	idOf := func(ref string) (string, error) {
		nw, err := c.NetworkInspect(ctx, ref, "")
		if err != nil {
			return "", c.apiError(err)
		}
		return nw.ID, nil
	}
	for _, ref := range o.networkRm {
		id, err := idOf(ref)
		if err != nil {
			return err
		}
		spec.TaskTemplate.Networks = slices.DeleteFunc(spec.TaskTemplate.Networks, func(n swarm.NetworkAttachmentConfig) bool {
			return n.Target == id || n.Target == ref
		})
	}
	for _, v := range o.networkAdd {
		n, err := parseServiceNetwork(v)
		if err != nil {
			return err
		}
		id, err := idOf(n.Target)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(spec.TaskTemplate.Networks, func(m swarm.NetworkAttachmentConfig) bool { return m.Target == id || m.Target == n.Target }) {
			return fmt.Errorf("service is already attached to network %s", n.Target)
		}
		n.Target = id
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, n)
	}
	return nil
}

// applyFiles applies --secret-rm/--secret-add and --config-rm/--config-add
// as docker's update does: removal by the secret's (config's) name, then
// the added ones, their names resolved to IDs through the API.
func (o *serviceUpdateOptions) applyFiles(ctx context.Context, c *apiClient, fl *pflag.FlagSet, spec *swarm.ServiceSpec) error {
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return nil
	}
	if fl.Changed("secret-add") || fl.Changed("secret-rm") {
		secrets, err := updateServiceSecrets(ctx, c, cs.Secrets, o.secretAdd.refs, o.secretRm)
		if err != nil {
			return c.apiError(err)
		}
		cs.Secrets = secrets
	}
	if fl.Changed("config-add") || fl.Changed("config-rm") {
		configs, err := updateServiceConfigs(ctx, c, cs.Configs, o.configAdd.refs, o.configRm)
		if err != nil {
			return c.apiError(err)
		}
		cs.Configs = configs
	}
	return nil
}
