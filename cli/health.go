package cli

import (
	"errors"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/spf13/pflag"
)

// healthOptions are the --health-* flags of run, create and service create.
type healthOptions struct {
	cmd                                           string
	interval, timeout, startPeriod, startInterval time.Duration
	retries                                       int
	none                                          bool
}

func addHealthFlags(fl *pflag.FlagSet, o *healthOptions) {
	fl.StringVar(&o.cmd, "health-cmd", "", "Command to run to check health")
	fl.DurationVar(&o.interval, "health-interval", 0, "Time between running the check (ms|s|m|h) (default 0s)")
	fl.DurationVar(&o.timeout, "health-timeout", 0, "Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
	fl.DurationVar(&o.startPeriod, "health-start-period", 0, "Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)")
	fl.DurationVar(&o.startInterval, "health-start-interval", 0, "Time between running the check during the start period (ms|s|m|h) (default 0s)")
	fl.IntVar(&o.retries, "health-retries", 0, "Consecutive failures needed to report unhealthy")
	fl.BoolVar(&o.none, "no-healthcheck", false, "Disable any container-specified HEALTHCHECK")
}

// config is the healthcheck the flags ask for, as the docker CLI builds it:
// nil when none was given, {"NONE"} for --no-healthcheck, the image's test
// (an empty Test) when only timings were given.
func (o healthOptions) config() (*container.HealthConfig, error) {
	timings := o.interval != 0 || o.timeout != 0 || o.startPeriod != 0 || o.startInterval != 0 || o.retries != 0
	if o.none {
		if o.cmd != "" || timings {
			return nil, errors.New("--no-healthcheck conflicts with --health-* options")
		}
		return &container.HealthConfig{Test: []string{"NONE"}}, nil
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--health-interval", o.interval}, {"--health-timeout", o.timeout}, {"--health-start-period", o.startPeriod}, {"--health-start-interval", o.startInterval}} {
		if d.v < 0 {
			return nil, errors.New(d.flag + " cannot be negative")
		}
	}
	if o.retries < 0 {
		return nil, errors.New("--health-retries cannot be negative")
	}
	if o.cmd == "" && !timings {
		return nil, nil
	}
	hc := &container.HealthConfig{Interval: o.interval, Timeout: o.timeout, StartPeriod: o.startPeriod, StartInterval: o.startInterval, Retries: o.retries}
	if o.cmd != "" {
		hc.Test = []string{"CMD-SHELL", o.cmd}
	}
	return hc, nil
}

var healthFlags = []string{"health-cmd", "health-interval", "health-timeout", "health-start-period", "health-start-interval", "health-retries"}

// update is `service update`'s change of cur, as the docker CLI makes it:
// only the flags given change; --no-healthcheck alone disables it, an
// empty --health-cmd goes back to the image's test.
func (o healthOptions) update(fl *pflag.FlagSet, cur *container.HealthConfig) (*container.HealthConfig, error) {
	changed := false
	for _, f := range healthFlags {
		changed = changed || fl.Changed(f)
	}
	if !changed && !fl.Changed("no-healthcheck") {
		return cur, nil
	}
	if o.none {
		if changed {
			return nil, errors.New("--no-healthcheck conflicts with --health-* options")
		}
		return &container.HealthConfig{Test: []string{"NONE"}}, nil
	}
	if _, err := o.config(); err != nil {
		return nil, err // a negative value
	}
	hc := container.HealthConfig{}
	if cur != nil {
		hc = *cur
	}
	if len(hc.Test) > 0 && hc.Test[0] == "NONE" {
		hc.Test = nil
	}
	for _, f := range []struct {
		flag string
		dst  *time.Duration
		v    time.Duration
	}{{"health-interval", &hc.Interval, o.interval}, {"health-timeout", &hc.Timeout, o.timeout}, {"health-start-period", &hc.StartPeriod, o.startPeriod}, {"health-start-interval", &hc.StartInterval, o.startInterval}} {
		if fl.Changed(f.flag) {
			*f.dst = f.v
		}
	}
	if fl.Changed("health-retries") {
		hc.Retries = o.retries
	}
	if fl.Changed("health-cmd") {
		hc.Test = nil
		if o.cmd != "" {
			hc.Test = []string{"CMD-SHELL", o.cmd}
		}
	}
	return &hc, nil
}
