package daemon

import (
	"encoding/json"
	"fmt"
	"maps"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/logs"
)

// logDriver names the daemon's default log driver, for /info.
func (c Config) logDriver() string { return logs.Config{Driver: c.LogDriver}.Name() }

// logDefaults reads the daemon's --log-driver and --log-opt.
func (c Config) logDefaults() (string, map[string]string, error) {
	opts, err := logs.ParseOpts(c.LogOpts)
	if err != nil {
		return "", nil, fmt.Errorf("daemon --log-opt: %w", err)
	}
	driver := c.logDriver()
	if _, err := logs.ParseConfig(driver, opts); err != nil {
		return "", nil, fmt.Errorf("daemon --log-driver/--log-opt: %w", err)
	}
	return driver, opts, nil
}

// logConfig completes a container's LogConfig as dockerd does (no type: the
// daemon's driver; the daemon's driver: its options under the container's)
// and checks it. lc is what inspect shows afterwards.
func (d *Daemon) logConfig(lc *container.LogConfig) (logs.Config, error) {
	driver, defaults, err := d.cfg.logDefaults()
	if err != nil {
		return logs.Config{}, err
	}
	if lc.Type == "" {
		lc.Type = driver
	}
	if lc.Type == driver {
		merged := maps.Clone(defaults)
		maps.Copy(merged, lc.Config)
		lc.Config = merged
	}
	if lc.Config == nil {
		lc.Config = map[string]string{} // dockerd's {}, not null
	}
	cfg, err := logs.ParseConfig(lc.Type, lc.Config)
	if err != nil {
		return logs.Config{}, badRequest("%v", err)
	}
	return cfg, nil
}

// logDetails renders the attributes `logs --details` shows for c: the
// labels and environment its json-file log options pick.
func (d *Daemon) logDetails(c containers.Container) string {
	var hc container.HostConfig
	if json.Unmarshal(c.Config.RawHostConfig, &hc) != nil || hc.LogConfig.Type != logs.DriverJSONFile {
		return ""
	}
	return logs.Details(hc.LogConfig.Config, c.Config.Labels, c.Config.Env)
}
