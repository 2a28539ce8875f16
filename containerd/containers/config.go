package containers

import "time"

// Config is what a container is created with: Docker's Config and HostConfig
// fields that the engine honours.
type Config struct {
	Image      string            `json:"image"`
	Cmd        []string          `json:"cmd,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       string            `json:"user,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	OpenStdin  bool              `json:"openStdin,omitempty"`
	StdinOnce  bool              `json:"stdinOnce,omitempty"`
	StopSignal string            `json:"stopSignal,omitempty"`
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
	// PidMode is "" (own namespace), "host" or "container:<full ID>".
	PidMode string `json:"pidMode,omitempty"`
	// IpcMode is "" or "private", "shareable", "none" or "host".
	IpcMode string `json:"ipcMode,omitempty"`
	// ShmSize is the size of /dev/shm in bytes; 0 is Docker's 64 MiB.
	ShmSize int64 `json:"shmSize,omitempty"`
	// GroupAdd are supplementary groups (gids or names of the container's
	// /etc/group) added to the process's.
	GroupAdd []string `json:"groupAdd,omitempty"`

	// RestartPolicy says whether the engine starts the container again
	// when it exits (see restart.go).
	RestartPolicy RestartPolicy `json:"restartPolicy,omitempty"`
	// Healthcheck is the probe the engine runs in the running container:
	// the one given at create merged over the image's HEALTHCHECK, nil when
	// there is none or it is disabled (see health.go).
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`

	// NetworkMode is none, bridge or host.
	NetworkMode string `json:"networkMode,omitempty"`
	// NetNSPath is the namespace to join (set by the daemon for bridge and none).
	NetNSPath string `json:"netnsPath,omitempty"`
	// Network holds what the daemon's network gave the container, for inspect.
	Network NetworkSettings `json:"network,omitempty"`

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
