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
