package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/spf13/pflag"
)

func healthFlagSet(t *testing.T, args ...string) (*pflag.FlagSet, healthOptions, error) {
	t.Helper()
	var o healthOptions
	fl := pflag.NewFlagSet("x", pflag.ContinueOnError)
	addHealthFlags(fl, &o)
	err := fl.Parse(args)
	return fl, o, err
}

func TestHealthFlags(t *testing.T) {
	_, o, _ := healthFlagSet(t, "--health-cmd", "curl -f localhost", "--health-interval", "2s", "--health-retries", "4")
	hc, err := o.config()
	if err != nil || strings.Join(hc.Test, "|") != "CMD-SHELL|curl -f localhost" || hc.Interval != 2*time.Second || hc.Retries != 4 {
		t.Fatalf("config: %+v %v", hc, err)
	}
	_, o, _ = healthFlagSet(t)
	if hc, err := o.config(); hc != nil || err != nil {
		t.Fatalf("no flags: %+v %v", hc, err)
	}
	_, o, _ = healthFlagSet(t, "--no-healthcheck")
	if hc, err := o.config(); err != nil || hc.Test[0] != "NONE" {
		t.Fatalf("--no-healthcheck: %+v %v", hc, err)
	}
	for _, args := range [][]string{
		{"--health-interval", "-1s"}, {"--health-timeout", "-1ms"}, {"--health-start-period", "-2s"},
		{"--health-start-interval", "-2s"}, {"--health-retries", "-1"}, {"--no-healthcheck", "--health-retries", "2"},
	} {
		if _, o, err := healthFlagSet(t, args...); err == nil {
			if _, err := o.config(); err == nil {
				t.Errorf("%v accepted", args)
			}
		}
	}
	if _, _, err := healthFlagSet(t, "--health-interval", "soon"); err == nil {
		t.Error("--health-interval soon accepted")
	}
}

// service update changes only what its flags name, as the docker CLI.
func TestHealthUpdate(t *testing.T) {
	cur := &container.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: time.Second, Retries: 3}
	fl, o, _ := healthFlagSet(t, "--health-retries", "5")
	hc, err := o.update(fl, cur)
	if err != nil || hc.Test[1] != "true" || hc.Interval != time.Second || hc.Retries != 5 || cur.Retries != 3 {
		t.Fatalf("--health-retries: %+v %v", hc, err)
	}
	fl, o, _ = healthFlagSet(t)
	if hc, _ := o.update(fl, cur); hc != cur {
		t.Fatalf("no flags changed it: %+v", hc)
	}
	fl, o, _ = healthFlagSet(t, "--no-healthcheck")
	if hc, _ := o.update(fl, cur); hc.Test[0] != "NONE" {
		t.Fatalf("--no-healthcheck: %+v", hc)
	}
	fl, o, _ = healthFlagSet(t, "--health-interval", "3s")
	if hc, _ := o.update(fl, &container.HealthConfig{Test: []string{"NONE"}}); len(hc.Test) != 0 || hc.Interval != 3*time.Second {
		t.Fatalf("timings over NONE go back to the image's test: %+v", hc)
	}
	fl, o, _ = healthFlagSet(t, "--health-interval", "-3s")
	if _, err := o.update(fl, cur); err == nil {
		t.Fatal("negative interval accepted")
	}
}
