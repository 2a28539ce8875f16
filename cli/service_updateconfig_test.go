package cli

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/pflag"
)

// parseRollout parses args as the rolling-update flags of create
// (withDefaults) or update.
func parseRollout(t *testing.T, withDefaults bool, args ...string) (*pflag.FlagSet, *rolloutFlags) {
	t.Helper()
	fl := pflag.NewFlagSet("test", pflag.ContinueOnError)
	r := &rolloutFlags{}
	addRolloutFlags(fl, r, withDefaults)
	if err := fl.Parse(args); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return fl, r
}

// swarmDefaults is swarm's default config with change applied.
func swarmDefaults(change func(*swarm.UpdateConfig)) *swarm.UpdateConfig {
	c := swarm.UpdateConfig{Parallelism: 1, Monitor: 5 * time.Second, FailureAction: "pause", Order: "stop-first"}
	change(&c)
	return &c
}

func TestRolloutFlagsCreate(t *testing.T) {
	for _, c := range []struct {
		args             []string
		update, rollback *swarm.UpdateConfig
	}{
		{args: nil},
		// --update-monitor alone sends what it sent before these flags.
		{args: []string{"--update-monitor", "2s"}, update: swarmDefaults(func(c *swarm.UpdateConfig) { c.Monitor = 2 * time.Second })},
		{args: []string{"--update-delay", "10s"}, update: swarmDefaults(func(c *swarm.UpdateConfig) { c.Delay = 10 * time.Second })},
		// An explicit 0 is applied, not mistaken for "not given".
		{args: []string{"--rollback-parallelism", "0", "--rollback-order", "start-first"},
			rollback: swarmDefaults(func(c *swarm.UpdateConfig) { c.Parallelism, c.Order = 0, "start-first" })},
		{args: []string{"--update-parallelism", "3", "--update-delay", "1m", "--update-monitor", "30s", "--update-failure-action", "rollback",
			"--update-max-failure-ratio", "0.25", "--update-order", "start-first",
			"--rollback-parallelism", "2", "--rollback-delay", "2s", "--rollback-monitor", "1s", "--rollback-failure-action", "continue",
			"--rollback-max-failure-ratio", "1", "--rollback-order", "stop-first"},
			update:   &swarm.UpdateConfig{Parallelism: 3, Delay: time.Minute, Monitor: 30 * time.Second, FailureAction: "rollback", MaxFailureRatio: 0.25, Order: "start-first"},
			rollback: &swarm.UpdateConfig{Parallelism: 2, Delay: 2 * time.Second, Monitor: time.Second, FailureAction: "continue", MaxFailureRatio: 1, Order: "stop-first"}},
	} {
		fl, r := parseRollout(t, true, c.args...)
		var spec swarm.ServiceSpec
		if err := r.apply(fl, &spec); err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if !reflect.DeepEqual(spec.UpdateConfig, c.update) || !reflect.DeepEqual(spec.RollbackConfig, c.rollback) {
			t.Errorf("%q: update %+v rollback %+v; want %+v and %+v", c.args, spec.UpdateConfig, spec.RollbackConfig, c.update, c.rollback)
		}
	}
}

func TestRolloutFlagsUpdate(t *testing.T) {
	cur := swarm.UpdateConfig{Parallelism: 3, Delay: time.Minute, Monitor: 30 * time.Second, FailureAction: "rollback", MaxFailureRatio: 0.25, Order: "start-first"}
	kept := cur
	spec := swarm.ServiceSpec{UpdateConfig: &kept}
	fl, r := parseRollout(t, false, "--update-delay", "5s", "--rollback-failure-action", "continue")
	if err := r.apply(fl, &spec); err != nil {
		t.Fatal(err)
	}
	want := cur
	want.Delay = 5 * time.Second
	if !reflect.DeepEqual(*spec.UpdateConfig, want) {
		t.Errorf("update config %+v, want %+v", *spec.UpdateConfig, want)
	}
	if kept != cur {
		t.Errorf("the inspected config was modified: %+v", kept)
	}
	// No rollback config yet: it starts from swarm's defaults.
	if want := swarmDefaults(func(c *swarm.UpdateConfig) { c.FailureAction = "continue" }); !reflect.DeepEqual(spec.RollbackConfig, want) {
		t.Errorf("rollback config %+v, want %+v", spec.RollbackConfig, want)
	}
	// No flag: both configs stay as they are, unset included.
	spec = swarm.ServiceSpec{UpdateConfig: &kept}
	fl, r = parseRollout(t, false)
	if err := r.apply(fl, &spec); err != nil || spec.UpdateConfig != &kept || spec.RollbackConfig != nil {
		t.Errorf("no flags: %+v %+v %v", spec.UpdateConfig, spec.RollbackConfig, err)
	}
}

func TestRolloutFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--update-failure-action", "stop"}, `invalid --update-failure-action "stop": must be pause, continue or rollback`},
		{[]string{"--update-failure-action", "Pause"}, `invalid --update-failure-action "Pause"`},
		{[]string{"--rollback-failure-action", "rollback"}, `invalid --rollback-failure-action "rollback": a rollback cannot roll itself back: must be pause or continue`},
		{[]string{"--rollback-failure-action", "bogus"}, `invalid --rollback-failure-action "bogus": must be pause or continue`},
		{[]string{"--update-order", "random"}, `invalid --update-order "random": must be start-first or stop-first`},
		{[]string{"--rollback-order", ""}, `invalid --rollback-order "": must be start-first or stop-first`},
		{[]string{"--update-max-failure-ratio", "1.5"}, "invalid --update-max-failure-ratio 1.5: must be between 0 and 1"},
		{[]string{"--rollback-max-failure-ratio", "-0.1"}, "invalid --rollback-max-failure-ratio -0.1: must be between 0 and 1"},
		{[]string{"--update-max-failure-ratio", "NaN"}, "invalid --update-max-failure-ratio NaN: must be between 0 and 1"},
		{[]string{"--update-delay", "-1s"}, "invalid --update-delay -1s: must not be negative"},
		{[]string{"--rollback-monitor", "-5ms"}, "invalid --rollback-monitor -5ms: must not be negative"},
	} {
		for _, create := range []bool{true, false} {
			fl, r := parseRollout(t, create, c.args...)
			spec := swarm.ServiceSpec{}
			errApply := r.apply(fl, &spec)
			errCheck := r.check(fl)
			for _, err := range []error{errApply, errCheck} {
				if err == nil || !errors.Is(err, ErrInvalidServiceSpec) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("%q (create %v): %v, want %q", c.args, create, err, c.msg)
				}
			}
		}
	}
	// The values just inside the limits pass.
	fl, r := parseRollout(t, true, "--update-max-failure-ratio", "0", "--rollback-max-failure-ratio", "1", "--update-delay", "0s")
	if err := r.check(fl); err != nil {
		t.Errorf("limits refused: %v", err)
	}
}

func TestRolloutFlagHelp(t *testing.T) {
	create := runCLI(t, "unix:///nonexistent.sock", "", "service", "create", "--help").stdout
	update := runCLI(t, "unix:///nonexistent.sock", "", "service", "update", "--help").stdout
	for _, want := range []string{
		"--update-parallelism uint            Maximum number of tasks updated simultaneously (0 to update all at once) (default 1)\n",
		"--update-delay duration              Delay between updates (ns|us|ms|s|m|h) (default 0s)\n",
		`--update-failure-action string       Action on update failure ("pause", "continue", "rollback") (default "pause")` + "\n",
		"--update-max-failure-ratio float     Failure rate to tolerate during an update (default 0)\n",
		`--rollback-order string              Rollback order ("start-first", "stop-first") (default "stop-first")` + "\n",
		"--rollback-monitor duration          Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s)\n",
	} {
		if !strings.Contains(create, want) {
			t.Errorf("create help lacks %q", want)
		}
	}
	// update shows no defaults: an unchanged flag keeps the service's value.
	for _, want := range []string{
		"--update-parallelism uint            Maximum number of tasks updated simultaneously (0 to update all at once)\n",
		`--rollback-failure-action string     Action on rollback failure ("pause", "continue")` + "\n",
		"--rollback                           Rollback to previous specification\n",
	} {
		if !strings.Contains(update, want) {
			t.Errorf("update help lacks %q", want)
		}
	}
}

// TestServiceRolloutBodies: the configs go in the create and update
// requests; a bad value sends nothing at all.
func TestServiceRolloutBodies(t *testing.T) {
	f := newClusterFake(t)
	r := runCLI(t, f.host, "", "service", "create", "-d", "--name", "web", "--update-failure-action", "rollback", "--rollback-monitor", "1s", "busybox")
	if r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	var spec swarm.ServiceSpec
	json.Unmarshal(f.body("POST /services/create"), &spec)
	if want := swarmDefaults(func(c *swarm.UpdateConfig) { c.FailureAction = "rollback" }); !reflect.DeepEqual(spec.UpdateConfig, want) {
		t.Errorf("create update config %+v", spec.UpdateConfig)
	}
	if want := swarmDefaults(func(c *swarm.UpdateConfig) { c.Monitor = time.Second }); !reflect.DeepEqual(spec.RollbackConfig, want) {
		t.Errorf("create rollback config %+v", spec.RollbackConfig)
	}

	r = runCLI(t, f.host, "", "service", "update", "-d", "--update-order", "start-first", "--rollback-failure-action", "continue", "web")
	if r.code != 0 || r.stdout != "web\n" {
		t.Fatalf("update: %+v", r)
	}
	json.Unmarshal(f.body("POST /services/svcid0123456789abcdef/update"), &spec)
	if want := swarmDefaults(func(c *swarm.UpdateConfig) { c.FailureAction, c.Order = "rollback", "start-first" }); !reflect.DeepEqual(spec.UpdateConfig, want) {
		t.Errorf("update: update config %+v", spec.UpdateConfig)
	}
	if want := swarmDefaults(func(c *swarm.UpdateConfig) { c.Monitor, c.FailureAction = time.Second, "continue" }); !reflect.DeepEqual(spec.RollbackConfig, want) {
		t.Errorf("update: rollback config %+v", spec.RollbackConfig)
	}

	sent := len(f.requests())
	for _, args := range [][]string{
		{"service", "create", "-d", "--update-failure-action", "retry", "busybox"},
		{"service", "update", "-d", "--rollback-failure-action", "rollback", "web"},
		{"service", "update", "-d", "--update-max-failure-ratio", "2", "web"},
	} {
		r := runCLI(t, f.host, "", args...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "invalid service specification: invalid --") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: %+v", args, r)
		}
	}
	if got := f.requests()[sent:]; len(got) != 0 {
		t.Errorf("bad values still sent %q", got)
	}
}
