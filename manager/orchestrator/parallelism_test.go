package orchestrator

import (
	"testing"

	"github.com/shoal-project/shoal/api"
)

// TestParallelismOfARollback: `service rollback` rolls at the rollback
// config's parallelism, an update at the update config's (Docker's
// --rollback-parallelism and --update-parallelism).
func TestParallelismOfARollback(t *testing.T) {
	for _, tc := range []struct {
		name             string
		update, rollback *api.UpdateConfig
		state            api.UpdateStatus_State
		want             int
	}{
		{"no config", nil, nil, api.UpdateStatus_UNKNOWN, 1},
		{"update", &api.UpdateConfig{Parallelism: 3}, &api.UpdateConfig{Parallelism: 2}, api.UpdateStatus_UNKNOWN, 3},
		{"update, all at once", &api.UpdateConfig{Parallelism: 0}, nil, api.UpdateStatus_UNKNOWN, 0},
		{"rollback", &api.UpdateConfig{Parallelism: 3}, &api.UpdateConfig{Parallelism: 2}, api.UpdateStatus_ROLLBACK_STARTED, 2},
		{"rollback without a rollback config", &api.UpdateConfig{Parallelism: 3}, nil, api.UpdateStatus_ROLLBACK_STARTED, 1},
		{"after a rollback", &api.UpdateConfig{Parallelism: 3}, &api.UpdateConfig{Parallelism: 2}, api.UpdateStatus_ROLLBACK_COMPLETED, 3},
	} {
		svc := replicated(4)
		svc.Spec.Update, svc.Spec.Rollback = tc.update, tc.rollback
		if tc.state != api.UpdateStatus_UNKNOWN {
			svc.UpdateStatus = &api.UpdateStatus{State: tc.state}
		}
		if got := policyOf(svc).parallelism; got != tc.want {
			t.Errorf("%s: parallelism %d, want %d", tc.name, got, tc.want)
		}
	}
}
