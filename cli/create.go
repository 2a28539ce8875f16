package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// containerOptions are the flags run and create share.
type containerOptions struct {
	name        string
	pull        string // --pull: always, missing or never
	env         []string
	envFiles    []string
	workdir     string
	user        string
	hostname    string
	domainname  string
	memory      memBytes
	cpus        nanoCPUs
	pidsLimit   int64
	network     string
	netAliases  []string
	ip          string
	publish     []string
	volumes     []string
	mounts      []string
	tmpfs       []string
	volumesFrom []string
	interactive bool
	tty         bool
	securityOpt []string
	stopTimeout int
	stopSignal  string
	entrypoint  string
	labels      []string
	autoRemove  bool
	readOnly    bool
	privileged  bool
	capAdd      []string
	capDrop     []string
	restart     string
	init        bool
	memorySwap  memSwapBytes
	cpusetCpus  string
	cpusetMems  string
	shmSize     memBytes
	sysctls     []string
	ulimits     ulimitList
	pid         string
	ipc         string
	uts         string
	groupAdd    []string
	cidFile     string
	labelFiles  []string
	devices     []string
	addHosts    []string
	dns         []string
	dnsSearch   []string
	dnsOptions  []string
	health      healthOptions
	logDriver   string
	logOpts     []string
}

func addContainerFlags(fl *pflag.FlagSet, o *containerOptions) {
	fl.SetInterspersed(false)             // flags after IMAGE belong to the command
	fl.Bool("help", false, "Print usage") // no -h: it is --hostname here, as in docker
	fl.StringVar(&o.name, "name", "", "Assign a name to the container")
	fl.StringVar(&o.pull, "pull", "missing", `Pull image before running ("always", "missing", "never")`)
	fl.VarP((*stringArray)(&o.env), "env", "e", "Set environment variables")
	fl.Var((*stringArray)(&o.envFiles), "env-file", "Read in a file of environment variables")
	fl.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	fl.StringVarP(&o.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fl.StringVarP(&o.hostname, "hostname", "h", "", "Container host name")
	fl.StringVar(&o.domainname, "domainname", "", "Container NIS domain name")
	fl.VarP(&o.memory, "memory", "m", "Memory limit")
	fl.Var(&o.cpus, "cpus", "Number of CPUs")
	fl.Int64Var(&o.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	fl.StringVar(&o.network, "network", "", "Connect a container to a network (none, bridge, host or a user network)")
	fl.Var((*stringArray)(&o.netAliases), "network-alias", "Add network-scoped alias for the container")
	fl.StringVar(&o.ip, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	fl.VarP((*stringArray)(&o.publish), "publish", "p", "Publish a container's port(s) to the host")
	fl.VarP((*stringArray)(&o.volumes), "volume", "v", "Bind mount a volume")
	fl.Var((*stringArray)(&o.mounts), "mount", "Attach a filesystem mount to the container")
	fl.Var((*stringArray)(&o.tmpfs), "tmpfs", "Mount a tmpfs directory")
	fl.Var((*stringArray)(&o.volumesFrom), "volumes-from", "Mount volumes from the specified container(s)")
	fl.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	fl.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	fl.Var((*stringArray)(&o.securityOpt), "security-opt", "Security Options")
	fl.IntVar(&o.stopTimeout, "stop-timeout", 0, "Timeout (in seconds) to stop a container")
	fl.StringVar(&o.stopSignal, "stop-signal", "", "Signal to stop the container")
	fl.StringVar(&o.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	fl.VarP((*stringArray)(&o.labels), "label", "l", "Set meta data on a container")
	fl.BoolVar(&o.autoRemove, "rm", false, "Automatically remove the container when it exits")
	fl.BoolVar(&o.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	fl.BoolVar(&o.privileged, "privileged", false, "Give extended privileges to this container")
	fl.Var((*stringArray)(&o.capAdd), "cap-add", "Add Linux capabilities")
	fl.Var((*stringArray)(&o.capDrop), "cap-drop", "Drop Linux capabilities")
	fl.StringVar(&o.restart, "restart", "", "Restart policy to apply when a container exits (no, always, on-failure[:N], unless-stopped)")
	fl.BoolVar(&o.init, "init", false, "Run an init inside the container that forwards signals and reaps processes")
	fl.Var(&o.memorySwap, "memory-swap", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	fl.StringVar(&o.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fl.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	fl.Var(&o.shmSize, "shm-size", "Size of /dev/shm")
	fl.Var((*stringArray)(&o.sysctls), "sysctl", "Sysctl options")
	fl.Var(&o.ulimits, "ulimit", "Ulimit options")
	fl.StringVar(&o.pid, "pid", "", "PID namespace to use")
	fl.StringVar(&o.ipc, "ipc", "", "IPC mode to use")
	fl.StringVar(&o.uts, "uts", "", "UTS namespace to use (host)")
	fl.Var((*stringArray)(&o.groupAdd), "group-add", "Add additional groups to join")
	fl.StringVar(&o.logDriver, "log-driver", "", "Logging driver for the container (json-file, local, none)")
	fl.Var((*stringArray)(&o.logOpts), "log-opt", "Log driver options (KEY=VALUE, repeatable)")
	fl.StringVar(&o.cidFile, "cidfile", "", "Write the container ID to the file")
	fl.Var((*stringArray)(&o.labelFiles), "label-file", "Read in a line delimited file of labels")
	fl.Var((*stringArray)(&o.devices), "device", "Add a host device to the container (HOST[:CONTAINER][:rwm])")
	fl.Var((*stringArray)(&o.addHosts), "add-host", "Add a custom host-to-IP mapping (host:ip)")
	fl.Var((*stringArray)(&o.dns), "dns", "Set custom DNS servers")
	fl.Var((*stringArray)(&o.dnsSearch), "dns-search", "Set custom DNS search domains")
	fl.Var((*stringArray)(&o.dnsOptions), "dns-option", "Set DNS options")
	addHealthFlags(fl, &o.health)
}

// createRequest is a fully built container create call.
type createRequest struct {
	Name string
	// CIDFile is --cidfile: the file the new container's ID is written to.
	CIDFile    string
	Config     *container.Config
	HostConfig *container.HostConfig
	// Pull is --pull: always, missing (the default) or never.
	Pull string
	// Networking holds the --network-alias and --ip of the container's
	// network, nil without them.
	Networking *network.NetworkingConfig
}

// build validates the options and turns them, with IMAGE [CMD...], into a
// create request. lookupEnv resolves bare -e names.
func (o *containerOptions) build(fl *pflag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (createRequest, error) {
	img := args[0]
	if _, err := parseAnyImageRef(img); err != nil {
		return createRequest{}, err
	}
	switch o.pull {
	case "always", "missing", "never":
	default:
		return createRequest{}, fmt.Errorf(`invalid pull option: %q: must be one of "always", "missing" or "never"`, o.pull)
	}
	fileEnv, err := readEnvFiles(o.envFiles)
	if err != nil {
		return createRequest{}, err
	}
	flagEnv, err := parseEnvList(o.env, lookupEnv)
	if err != nil {
		return createRequest{}, err
	}
	exposed, bindings, err := parsePublish(o.publish)
	if err != nil {
		return createRequest{}, err
	}
	fileLabels, err := readLabelFiles(o.labelFiles)
	if err != nil {
		return createRequest{}, err
	}
	labels, err := parseLabels(append(fileLabels, o.labels...))
	if err != nil {
		return createRequest{}, err
	}
	var binds []string
	var anon map[string]struct{}
	for _, v := range o.volumes {
		spec, err := parseVolume(v)
		if err != nil {
			return createRequest{}, err
		}
		if b := spec.Bind(); b != "" {
			binds = append(binds, b)
		} else {
			if anon == nil {
				anon = map[string]struct{}{}
			}
			anon[spec.Target] = struct{}{}
		}
	}
	var mounts []mount.Mount
	for _, v := range o.mounts {
		m, err := parseMount(v)
		if err != nil {
			return createRequest{}, err
		}
		mounts = append(mounts, m)
	}
	tmpfs, err := parseTmpfs(o.tmpfs)
	if err != nil {
		return createRequest{}, err
	}
	if err := checkVolumesFrom(o.volumesFrom); err != nil {
		return createRequest{}, err
	}
	restart, err := parseRestartPolicy(o.restart)
	if err != nil {
		return createRequest{}, err
	}
	if o.autoRemove && restart.Name != "" && restart.Name != container.RestartPolicyDisabled {
		return createRequest{}, errors.New("conflicting options: cannot specify both --restart and --rm")
	}
	health, err := o.health.config()
	if err != nil {
		return createRequest{}, err
	}
	network := o.network
	if network == "" || network == "default" {
		// dockerd maps "default" to bridge on Linux; naming bridge directly
		// works with a daemon that only knows none, bridge and host.
		network = "bridge"
	}
	if network == "host" && len(bindings) > 0 {
		// docker accepts and ignores them with a warning; refusing is clearer.
		return createRequest{}, errors.New("conflicting options: port publishing and the container type network mode")
	}

	cfg := &container.Config{
		Image:        img,
		Hostname:     o.hostname,
		Domainname:   o.domainname,
		User:         o.user,
		Env:          append(fileEnv, flagEnv...),
		WorkingDir:   o.workdir,
		Labels:       labels,
		ExposedPorts: exposed,
		Volumes:      anon,
		StopSignal:   o.stopSignal,
		Tty:          o.tty,
		OpenStdin:    o.interactive,
		StdinOnce:    o.interactive,
		AttachStdin:  o.interactive,
		AttachStdout: true,
		AttachStderr: true,
		Healthcheck:  health,
	}
	if len(args) > 1 {
		cfg.Cmd = append([]string(nil), args[1:]...)
	}
	if fl.Changed("entrypoint") {
		cfg.Entrypoint = []string{o.entrypoint} // "" resets the image's entrypoint, as in docker
	}
	if fl.Changed("stop-timeout") {
		t := o.stopTimeout
		cfg.StopTimeout = &t
	}
	securityOpt, err := readSeccompFiles(o.securityOpt)
	if err != nil {
		return createRequest{}, err
	}
	hc := &container.HostConfig{
		Binds:          binds,
		Mounts:         mounts,
		Tmpfs:          tmpfs,
		VolumesFrom:    o.volumesFrom,
		NetworkMode:    container.NetworkMode(network),
		PortBindings:   bindings,
		RestartPolicy:  restart,
		AutoRemove:     o.autoRemove,
		SecurityOpt:    securityOpt,
		ReadonlyRootfs: o.readOnly,
		Privileged:     o.privileged,
		CapAdd:         o.capAdd,
		CapDrop:        o.capDrop,
	}
	hc.Memory = int64(o.memory)
	hc.NanoCPUs = int64(o.cpus)
	hc.MemorySwap = int64(o.memorySwap)
	hc.CpusetCpus, hc.CpusetMems = o.cpusetCpus, o.cpusetMems
	hc.ShmSize = int64(o.shmSize)
	hc.Ulimits = o.ulimits
	hc.PidMode, hc.IpcMode, hc.UTSMode = container.PidMode(o.pid), container.IpcMode(o.ipc), container.UTSMode(o.uts)
	hc.GroupAdd = o.groupAdd
	if hc.LogConfig, err = logConfig(o.logDriver, o.logOpts); err != nil {
		return createRequest{}, err
	}
	for _, h := range o.addHosts {
		if err := checkAddHost(h); err != nil {
			return createRequest{}, fmt.Errorf("invalid argument %q for \"--add-host\" flag: %w", h, err)
		}
	}
	hc.ExtraHosts, hc.DNSSearch, hc.DNSOptions = o.addHosts, o.dnsSearch, o.dnsOptions
	for _, d := range o.dns {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return createRequest{}, fmt.Errorf("invalid argument %q for \"--dns\" flag: %s is not an IP address", d, d)
		}
		hc.DNS = append(hc.DNS, a)
	}
	for _, kv := range o.sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return createRequest{}, fmt.Errorf("invalid argument %q for \"--sysctl\" flag: sysctl '%s' is not KEY=VALUE", kv, kv)
		}
		if hc.Sysctls == nil {
			hc.Sysctls = map[string]string{}
		}
		hc.Sysctls[k] = v
	}
	for _, dv := range o.devices {
		m, err := parseDevice(dv)
		if err != nil {
			return createRequest{}, err
		}
		hc.Devices = append(hc.Devices, m)
	}
	if fl.Changed("pids-limit") {
		p := o.pidsLimit
		hc.PidsLimit = &p
	}
	if fl.Changed("init") {
		b := o.init
		hc.Init = &b
	}
	nc, err := o.networking(network)
	if err != nil {
		return createRequest{}, err
	}
	return createRequest{Name: o.name, CIDFile: o.cidFile, Config: cfg, HostConfig: hc, Pull: o.pull, Networking: nc}, nil
}

// parseDevice parses --device HOST[:CONTAINER][:PERMISSIONS] as the docker
// CLI does; the daemon checks the values.
func parseDevice(s string) (container.DeviceMapping, error) {
	parts := strings.Split(s, ":")
	d := container.DeviceMapping{PathOnHost: parts[0], CgroupPermissions: "rwm"}
	switch len(parts) {
	case 1:
		d.PathInContainer = parts[0]
	case 2:
		if p := parts[1]; p != "" && strings.Trim(p, "rwm") == "" {
			d.PathInContainer, d.CgroupPermissions = parts[0], p
		} else {
			d.PathInContainer = p
		}
	case 3:
		d.PathInContainer, d.CgroupPermissions = parts[1], parts[2]
	default:
		return d, fmt.Errorf("invalid device specification: %s", s)
	}
	if d.PathOnHost == "" || d.PathInContainer == "" {
		return d, fmt.Errorf("invalid device specification: %s", s)
	}
	return d, nil
}

// readSeccompFiles replaces --security-opt seccomp=FILE by the file's
// compacted content, as the docker CLI sends it (the daemon reads no
// client file); unconfined and builtin pass as they are.
func readSeccompFiles(opts []string) ([]string, error) {
	out := make([]string, 0, len(opts))
	for _, o := range opts {
		path, ok := strings.CutPrefix(o, "seccomp=")
		if !ok || path == "unconfined" || path == "builtin" || path == "" {
			out = append(out, o)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("opening seccomp profile (%s) failed: %w", path, err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return nil, fmt.Errorf("compacting json for seccomp profile (%s) failed: %w", path, err)
		}
		out = append(out, "seccomp="+buf.String())
	}
	return out, nil
}

// parseRestartPolicy parses --restart: no, always, unless-stopped, or
// on-failure[:max-retries].
func parseRestartPolicy(s string) (container.RestartPolicy, error) {
	if s == "" {
		return container.RestartPolicy{}, nil
	}
	name, count, hasCount := strings.Cut(s, ":")
	p := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	switch p.Name {
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if hasCount {
			return container.RestartPolicy{}, fmt.Errorf("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
		}
	case container.RestartPolicyOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return container.RestartPolicy{}, fmt.Errorf("invalid restart policy format: maximum retry count must be a non-negative integer")
			}
			p.MaximumRetryCount = n
		}
	default:
		return container.RestartPolicy{}, fmt.Errorf("invalid restart policy format: unknown policy %q", name)
	}
	return p, nil
}

// createContainer sends req; warnings go to stderr as docker prints them.
// With --cidfile the file is made before the create (an existing one is
// refused, as docker does: another container may own it) and holds the ID
// after; a failed create removes it.
func createContainer(cmd *cobra.Command, c *apiClient, req createRequest) (id string, err error) {
	var cid *os.File
	if req.CIDFile != "" {
		cid, err = os.OpenFile(req.CIDFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("container ID file found, make sure the other container isn't running or delete %s", req.CIDFile)
		}
		if err != nil {
			return "", fmt.Errorf("failed to create the container ID file: %w", err)
		}
		defer func() {
			if cerr := cid.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("failed to write the container ID file: %w", cerr)
			}
			if err != nil {
				os.Remove(req.CIDFile)
			}
		}()
	}
	create := func() (container.CreateResponse, error) {
		return c.ContainerCreate(commandContext(cmd), req.Name, container.CreateRequest{
			Config: req.Config, HostConfig: req.HostConfig, NetworkingConfig: req.Networking,
		})
	}
	// As docker: the pull's output goes to stderr, so that stdout holds
	// only the container's ID (create) or output (run).
	errOut := streamsOf(cmd).err
	if req.Pull == "always" {
		if err := pullImageTo(cmd, c, req.Config.Image, "", false, false, errOut); err != nil {
			return "", err
		}
	}
	res, err := create()
	if err != nil && req.Pull == "missing" && strings.Contains(err.Error(), "No such image") {
		fmt.Fprintf(errOut, "Unable to find image '%s' locally\n", familiarTagged(req.Config.Image))
		if err := pullImageTo(cmd, c, req.Config.Image, "", false, false, errOut); err != nil {
			return "", err
		}
		res, err = create()
	}
	if err != nil {
		return "", c.apiError(err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(streamsOf(cmd).err, "WARNING:", w)
	}
	if cid != nil {
		if _, err := cid.WriteString(res.ID); err != nil {
			return res.ID, fmt.Errorf("failed to write the container ID file: %w", err)
		}
	}
	return res.ID, nil
}

func newCreateCommand() *cobra.Command {
	var o containerOptions
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// As docker: bad options exit 125, anything after (no daemon,
			// the daemon's refusal) 1; run exits 125 for both.
			req, err := o.build(cmd.Flags(), args, os.LookupEnv)
			if err != nil {
				return StatusError{Status: err.Error(), Code: 125}
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			id, err := createContainer(cmd, c, req)
			if err != nil {
				return err
			}
			fmt.Fprintln(streamsOf(cmd).out, id)
			return nil
		},
	}
	addContainerFlags(cmd.Flags(), &o)
	return cmd
}

// checkAddHost refuses an --add-host that is not NAME:IP (or NAME=IP, or
// host-gateway for the IP) before anything is sent, as docker's CLI does.
func checkAddHost(e string) error {
	sep := ":"
	if strings.Contains(e, "=") {
		sep = "="
	}
	name, ip, ok := strings.Cut(e, sep)
	if !ok || name == "" {
		return fmt.Errorf("bad format for add-host: %q", e)
	}
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if _, err := netip.ParseAddr(ip); err != nil && ip != "host-gateway" {
		return fmt.Errorf("invalid IP address in add-host: %q", ip)
	}
	return nil
}
