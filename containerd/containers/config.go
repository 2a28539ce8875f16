package containers

import (
	"time"

	"github.com/shoal-project/shoal/containerd/logs"
)

// Config is what a container is created with: Docker's Config and HostConfig
// fields that the engine honours.
type Config struct {
	Image      string   `json:"image"`
	Cmd        []string `json:"cmd,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	// Domainname is the NIS domain name of the container's UTS namespace
	// (--domainname); /etc/hosts names the container host.domain too.
	Domainname string            `json:"domainname,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	OpenStdin  bool              `json:"openStdin,omitempty"`
	StdinOnce  bool              `json:"stdinOnce,omitempty"`
	// Tty gives the container a pseudo-terminal (its stdin, stdout and
	// stderr); ConsoleSize is its initial [height, width], zero for the
	// default.
	Tty         bool      `json:"tty,omitempty"`
	ConsoleSize [2]uint16 `json:"consoleSize,omitempty"`
	StopSignal  string    `json:"stopSignal,omitempty"`
	// StopTimeout in seconds; nil means 10.
	StopTimeout *int `json:"stopTimeout,omitempty"`

	Memory          int64    `json:"memory,omitempty"`
	NanoCPUs        int64    `json:"nanoCpus,omitempty"`
	CPUShares       int64    `json:"cpuShares,omitempty"`
	PidsLimit       int64    `json:"pidsLimit,omitempty"`
	Binds           []string `json:"binds,omitempty"`
	AutoRemove      bool     `json:"autoRemove,omitempty"`
	NoNewPrivileges bool     `json:"noNewPrivileges,omitempty"`
	ReadonlyRootfs  bool     `json:"readonlyRootfs,omitempty"`

	// Tmpfs maps a target to the options of a tmpfs mounted there.
	Tmpfs map[string]string `json:"tmpfs,omitempty"`

	// MemorySwap is memory+swap in bytes as Docker's --memory-swap: 0 is
	// twice Memory, -1 unlimited swap; it needs Memory.
	MemorySwap int64 `json:"memorySwap,omitempty"`
	// CpusetCpus and CpusetMems pin the container ("0-1,3"), checked
	// against the host's online CPUs and memory nodes.
	CpusetCpus string `json:"cpusetCpus,omitempty"`
	CpusetMems string `json:"cpusetMems,omitempty"`
	// Sysctls are namespaced kernel parameters set in the container.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Ulimits are process resource limits by Docker's names (nofile, nproc...).
	Ulimits []Ulimit `json:"ulimits,omitempty"`
	// UTSMode is "" (own namespace) or "host" (the host's hostname and
	// domain name, which the container then shares and may not set).
	UTSMode string `json:"utsMode,omitempty"`
	// PidMode is "" (own namespace), "host" or "container:<full ID>".
	PidMode string `json:"pidMode,omitempty"`
	// IpcMode is "" or "private", "shareable", "none" or "host".
	IpcMode string `json:"ipcMode,omitempty"`
	// ShmSize is the size of /dev/shm in bytes; 0 is Docker's 64 MiB.
	ShmSize int64 `json:"shmSize,omitempty"`
	// GroupAdd are supplementary groups (gids or names of the container's
	// /etc/group) added to the process's.
	GroupAdd []string `json:"groupAdd,omitempty"`

	// CapAdd and CapDrop change the default capabilities (names with or
	// without CAP_, or ALL), as dockerd does.
	CapAdd  []string `json:"capAdd,omitempty"`
	CapDrop []string `json:"capDrop,omitempty"`
	// Seccomp is "" (the default profile), "unconfined" or a profile in
	// Docker's JSON format.
	Seccomp string `json:"seccomp,omitempty"`

	// Init is --init: a small init as PID 1 runs the command, forwards
	// signals to it and reaps orphans.
	Init bool `json:"init,omitempty"`
	// Privileged is --privileged: every capability and host device, no
	// seccomp filter, no masked paths, /sys and cgroups writable.
	Privileged bool `json:"privileged,omitempty"`
	// Devices are --device host nodes made in the container.
	Devices []Device `json:"devices,omitempty"`

	// ExtraHosts are --add-host entries (NAME:IP, NAME=IP, NAME:host-gateway)
	// added to the container's /etc/hosts.
	ExtraHosts []string `json:"extraHosts,omitempty"`
	// DNS, DNSSearch and DNSOptions replace the host's nameserver, search
	// and options lines in the container's /etc/resolv.conf.
	DNS        []string `json:"dns,omitempty"`
	DNSSearch  []string `json:"dnsSearch,omitempty"`
	DNSOptions []string `json:"dnsOptions,omitempty"`

	// RestartPolicy says whether the engine starts the container again
	// when it exits (see restart.go).
	RestartPolicy RestartPolicy `json:"restartPolicy,omitempty"`
	// Healthcheck is the probe the engine runs in the running container:
	// the one given at create merged over the image's HEALTHCHECK, nil when
	// there is none or it is disabled (see health.go).
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`

	// ExposedPorts are the ports the container and its image expose
	// ("80/tcp": --expose, -p and EXPOSE); while it runs on a bridge, those
	// not published are listed without a host port, as dockerd lists them.
	ExposedPorts []string `json:"exposedPorts,omitempty"`

	// NetworkMode is none, bridge or host.
	NetworkMode string `json:"networkMode,omitempty"`
	// ClusterNetwork is the ID of the attachable overlay network the
	// container runs on (NetworkMode then holds its name); ClusterAliases
	// are its --network-alias names there. The daemon attaches it through
	// the swarm's managers at each start.
	ClusterNetwork string   `json:"clusterNetwork,omitempty"`
	ClusterAliases []string `json:"clusterAliases,omitempty"`
	// NetNSPath is the namespace to join (set by the daemon for bridge and none).
	NetNSPath string `json:"netnsPath,omitempty"`
	// Network holds what the daemon's network gave the container, for inspect.
	Network NetworkSettings `json:"network,omitempty"`

	// Log is the container's log driver and rotation (--log-driver,
	// --log-opt), checked by logs.ParseConfig.
	Log logs.Config `json:"log,omitempty"`

	// Raw keeps the API's Config and HostConfig as sent, for inspect.
	RawConfig     []byte `json:"rawConfig,omitempty"`
	RawHostConfig []byte `json:"rawHostConfig,omitempty"`
}

// Ulimit is one resource limit: Name is Docker's (nofile, nproc, core, ...);
// -1 is unlimited.
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// NetworkSettings are the addresses of a container on its network.
type NetworkSettings struct {
	IPAddress   string        `json:"ipAddress,omitempty"`
	IPPrefixLen int           `json:"ipPrefixLen,omitempty"`
	Gateway     string        `json:"gateway,omitempty"`
	MacAddress  string        `json:"macAddress,omitempty"`
	Ports       []PortBinding `json:"ports,omitempty"`
}

// PortBinding is one published port.
type PortBinding struct {
	HostIP        string `json:"hostIp,omitempty"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

// State is a container's run state, as Docker reports it.
type State struct {
	Status     string    `json:"status"` // created, running, exited, removing, dead
	Running    bool      `json:"running"`
	Pid        int       `json:"pid,omitempty"`
	ShimPid    int       `json:"shimPid,omitempty"`
	ExitCode   int       `json:"exitCode"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitempty"`
	// StoppedByUser is set by stop/kill so that an exit is not mistaken for a crash.
	StoppedByUser bool `json:"stoppedByUser,omitempty"`
	// Paused: its cgroup is frozen (`pause`); Running stays true.
	Paused bool `json:"paused,omitempty"`
	// Restarting: the container exited and its restart policy starts it
	// again after a back-off (Status is "restarting").
	Restarting bool `json:"restarting,omitempty"`
	// Health is the healthcheck's state; nil without a healthcheck.
	Health *Health `json:"health,omitempty"`
}

// Container is one container's record.
type Container struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"` // with the leading "/", as Docker
	Created time.Time `json:"created"`
	ImageID string    `json:"imageId"`
	// Path and Args are the process as resolved at create.
	Path   string   `json:"path"`
	Args   []string `json:"args"`
	Config Config   `json:"config"`
	State  State    `json:"state"`
	// RestartCount counts the restarts by the restart policy since the
	// last start by the user (or by the daemon at its start), as Docker's.
	RestartCount int `json:"restartCount,omitempty"`
}
