package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/pflag"
)

// The rolling-update flags of `service create` and `service update`, as
// docker's: --update-* make the spec's UpdateConfig, --rollback-* its
// RollbackConfig.

// updateConfigFlags are the six flags of one config, named prefix-*.
type updateConfigFlags struct {
	prefix          string // "update" or "rollback"
	parallelism     uint64
	delay, monitor  time.Duration
	failureAction   string
	maxFailureRatio float32Value
	order           string
}

// rolloutFlags are the flags of both configs.
type rolloutFlags struct {
	update, rollback updateConfigFlags
}

// defaultUpdateConfig is swarm's default for both configs: what docker
// starts from when a flag of a config that is not set yet is given.
func defaultUpdateConfig() swarm.UpdateConfig {
	return swarm.UpdateConfig{
		Parallelism:   1,
		Monitor:       5 * time.Second,
		FailureAction: swarm.UpdateFailureActionPause,
		Order:         swarm.UpdateOrderStopFirst,
	}
}

// addRolloutFlags adds the --update-* and --rollback-* flags. withDefaults
// is for create, whose help shows swarm's defaults; update's does not, as
// docker's, since there an unchanged flag keeps the service's value.
func addRolloutFlags(fl *pflag.FlagSet, r *rolloutFlags, withDefaults bool) {
	r.update.prefix, r.rollback.prefix = "update", "rollback"
	desc := func(text, def string) string {
		if withDefaults {
			return text + " (default " + def + ")"
		}
		return text
	}
	var parallelism uint64
	if withDefaults {
		parallelism = 1
	}
	u := &r.update
	fl.Uint64Var(&u.parallelism, "update-parallelism", parallelism, "Maximum number of tasks updated simultaneously (0 to update all at once)")
	fl.DurationVar(&u.delay, "update-delay", 0, desc("Delay between updates (ns|us|ms|s|m|h)", "0s"))
	fl.DurationVar(&u.monitor, "update-monitor", 0, desc("Duration after each task update to monitor for failure (ns|us|ms|s|m|h)", "5s"))
	fl.StringVar(&u.failureAction, "update-failure-action", "", desc(`Action on update failure ("pause", "continue", "rollback")`, `"pause"`))
	fl.Var(&u.maxFailureRatio, "update-max-failure-ratio", desc("Failure rate to tolerate during an update", "0"))
	fl.StringVar(&u.order, "update-order", "", desc(`Update order ("start-first", "stop-first")`, `"stop-first"`))
	rb := &r.rollback
	fl.Uint64Var(&rb.parallelism, "rollback-parallelism", parallelism, "Maximum number of tasks rolled back simultaneously (0 to roll back all at once)")
	fl.DurationVar(&rb.delay, "rollback-delay", 0, desc("Delay between task rollbacks (ns|us|ms|s|m|h)", "0s"))
	fl.DurationVar(&rb.monitor, "rollback-monitor", 0, desc("Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h)", "5s"))
	fl.StringVar(&rb.failureAction, "rollback-failure-action", "", desc(`Action on rollback failure ("pause", "continue")`, `"pause"`))
	fl.Var(&rb.maxFailureRatio, "rollback-max-failure-ratio", desc("Failure rate to tolerate during a rollback", "0"))
	fl.StringVar(&rb.order, "rollback-order", "", desc(`Rollback order ("start-first", "stop-first")`, `"stop-first"`))
}

// check refuses bad values of both configs before anything is sent.
func (r *rolloutFlags) check(fl *pflag.FlagSet) error {
	if err := r.update.check(fl); err != nil {
		return err
	}
	return r.rollback.check(fl)
}

// apply sets spec's UpdateConfig and RollbackConfig from the changed flags.
// It serves create (spec has neither) and update (spec is the service's).
func (r *rolloutFlags) apply(fl *pflag.FlagSet, spec *swarm.ServiceSpec) error {
	var err error
	if spec.UpdateConfig, err = r.update.merge(fl, spec.UpdateConfig); err != nil {
		return err
	}
	spec.RollbackConfig, err = r.rollback.merge(fl, spec.RollbackConfig)
	return err
}

func (f *updateConfigFlags) name(flag string) string { return f.prefix + "-" + flag }

func (f *updateConfigFlags) changed(fl *pflag.FlagSet) bool {
	return anyChanged(fl, f.name("parallelism"), f.name("delay"), f.name("monitor"),
		f.name("failure-action"), f.name("max-failure-ratio"), f.name("order"))
}

// merge is docker's rule for one config: unchanged when none of its flags
// is given; else cur (swarm's defaults when cur is nil) with the changed
// flags applied. cur itself is not modified.
func (f *updateConfigFlags) merge(fl *pflag.FlagSet, cur *swarm.UpdateConfig) (*swarm.UpdateConfig, error) {
	if !f.changed(fl) {
		return cur, nil
	}
	if err := f.check(fl); err != nil {
		return nil, err
	}
	out := defaultUpdateConfig()
	if cur != nil {
		out = *cur
	}
	if fl.Changed(f.name("parallelism")) {
		out.Parallelism = f.parallelism
	}
	if fl.Changed(f.name("delay")) {
		out.Delay = f.delay
	}
	if fl.Changed(f.name("monitor")) {
		out.Monitor = f.monitor
	}
	if fl.Changed(f.name("failure-action")) {
		out.FailureAction = swarm.FailureAction(f.failureAction)
	}
	if fl.Changed(f.name("max-failure-ratio")) {
		out.MaxFailureRatio = float32(f.maxFailureRatio)
	}
	if fl.Changed(f.name("order")) {
		out.Order = swarm.UpdateOrder(f.order)
	}
	return &out, nil
}

// check refuses what the manager would refuse, with the flag's name and
// the values it takes.
func (f *updateConfigFlags) check(fl *pflag.FlagSet) error {
	bad := func(flag, format string, a ...any) error {
		return fmt.Errorf("%w: invalid --%s %s", ErrInvalidServiceSpec, f.name(flag), fmt.Sprintf(format, a...))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"delay", f.delay}, {"monitor", f.monitor}} {
		if fl.Changed(f.name(d.flag)) && d.v < 0 {
			return bad(d.flag, "%s: must not be negative", d.v)
		}
	}
	if fl.Changed(f.name("failure-action")) {
		switch a := swarm.FailureAction(f.failureAction); {
		case a == swarm.UpdateFailureActionPause || a == swarm.UpdateFailureActionContinue:
		case a == swarm.UpdateFailureActionRollback && f.prefix == "update":
		case a == swarm.UpdateFailureActionRollback:
			return bad("failure-action", "%q: a rollback cannot roll itself back: must be pause or continue", a)
		case f.prefix == "update":
			return bad("failure-action", "%q: must be pause, continue or rollback", a)
		default:
			return bad("failure-action", "%q: must be pause or continue", a)
		}
	}
	// Written so that NaN, which compares false to everything, is refused.
	if r := float32(f.maxFailureRatio); fl.Changed(f.name("max-failure-ratio")) && !(r >= 0 && r <= 1) {
		return bad("max-failure-ratio", "%s: must be between 0 and 1", f.maxFailureRatio.String())
	}
	if o := swarm.UpdateOrder(f.order); fl.Changed(f.name("order")) && o != swarm.UpdateOrderStopFirst && o != swarm.UpdateOrderStartFirst {
		return bad("order", "%q: must be start-first or stop-first", o)
	}
	return nil
}

// float32Value is a float flag of the width of MaxFailureRatio, typed
// "float" in help as docker's.
type float32Value float32

func (v *float32Value) Set(s string) error {
	f, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return err
	}
	*v = float32Value(f)
	return nil
}

func (v *float32Value) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 32) }

func (v *float32Value) Type() string { return "float" }
