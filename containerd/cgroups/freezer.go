package cgroups

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Freezing stops every process of a cgroup where it stands, without a
// signal, until it is thawed: `commit` reads a running container's upper
// layer while it cannot change (Docker pauses by default for the same
// reason). On v1 the freezer controller's freezer.state is written FROZEN
// and read back until the kernel reports FROZEN (it says FREEZING while a
// task resists, e.g. in an uninterruptible sleep); on v2 (and in the
// unified tree of a hybrid host without a v1 freezer) cgroup.freeze is
// written 1 and cgroup.events is read until "frozen 1". Freeze waits until
// its context ends and then thaws again, so a failed freeze never leaves the
// container stopped.

// freezePoll is how often the frozen state is read back while waiting.
const freezePoll = time.Millisecond

// Freeze stops every process of the cgroup and returns once the kernel
// reports them all frozen. If ctx ends first the cgroup is thawed and the
// context's error returned.
func (m *v1) Freeze(ctx context.Context) error {
	if fz := m.dirs["freezer"]; fz != "" {
		return freezeV1(ctx, fz)
	}
	if m.unified != "" {
		return freezeV2(ctx, m.unified)
	}
	return fmt.Errorf("%w: no freezer hierarchy for %s", ErrUnavailable, m.path)
}

// Thaw lets the cgroup's processes run again and waits until they do.
func (m *v1) Thaw() error {
	if fz := m.dirs["freezer"]; fz != "" {
		return thawV1(fz)
	}
	if m.unified != "" {
		return thawV2(m.unified)
	}
	return fmt.Errorf("%w: no freezer hierarchy for %s", ErrUnavailable, m.path)
}

// Freeze stops every process of the cgroup (cgroup.freeze) and returns once
// cgroup.events says frozen. If ctx ends first the cgroup is thawed.
func (m *v2) Freeze(ctx context.Context) error { return freezeV2(ctx, m.dir) }

// Thaw lets the cgroup's processes run again and waits until they do.
func (m *v2) Thaw() error { return thawV2(m.dir) }

func freezeV1(ctx context.Context, dir string) error {
	for {
		// Written again each round, as runc does: a task that forked while
		// the cgroup was FREEZING can leave it there otherwise.
		if err := writeFile(dir, "freezer.state", "FROZEN"); err != nil {
			thawV1(dir)
			return fmt.Errorf("cgroups: freeze: %w", err)
		}
		s, err := readFile(dir, "freezer.state")
		if err != nil {
			thawV1(dir)
			return fmt.Errorf("cgroups: freeze: %w", err)
		}
		if s == "FROZEN" {
			return nil
		}
		if err := sleepCtx(ctx, freezePoll); err != nil {
			thawV1(dir)
			return fmt.Errorf("cgroups: freeze %s: still %s: %w", dir, s, err)
		}
	}
}

func thawV1(dir string) error {
	if err := writeFile(dir, "freezer.state", "THAWED"); err != nil {
		return fmt.Errorf("cgroups: thaw: %w", err)
	}
	// THAWED takes effect at once for every task; a read confirms it.
	for i := 0; i < 1000; i++ {
		s, err := readFile(dir, "freezer.state")
		if err != nil {
			return fmt.Errorf("cgroups: thaw: %w", err)
		}
		if s == "THAWED" {
			return nil
		}
		time.Sleep(freezePoll)
	}
	return fmt.Errorf("cgroups: thaw %s: the cgroup did not thaw", dir)
}

func freezeV2(ctx context.Context, dir string) error {
	if err := writeFile(dir, "cgroup.freeze", "1"); err != nil {
		return fmt.Errorf("cgroups: freeze: %w", err)
	}
	for {
		frozen, err := v2Frozen(dir)
		if err != nil {
			thawV2(dir)
			return fmt.Errorf("cgroups: freeze: %w", err)
		}
		if frozen {
			return nil
		}
		if err := sleepCtx(ctx, freezePoll); err != nil {
			thawV2(dir)
			return fmt.Errorf("cgroups: freeze %s: not frozen yet: %w", dir, err)
		}
	}
}

func thawV2(dir string) error {
	if err := writeFile(dir, "cgroup.freeze", "0"); err != nil {
		return fmt.Errorf("cgroups: thaw: %w", err)
	}
	for i := 0; i < 1000; i++ {
		frozen, err := v2Frozen(dir)
		if err != nil {
			return fmt.Errorf("cgroups: thaw: %w", err)
		}
		if !frozen {
			return nil
		}
		time.Sleep(freezePoll)
	}
	return fmt.Errorf("cgroups: thaw %s: the cgroup did not thaw", dir)
}

// v2Frozen reads the "frozen" key of cgroup.events.
func v2Frozen(dir string) (bool, error) {
	s, err := readFile(dir, "cgroup.events")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "frozen "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, fmt.Errorf("cgroups: %s/cgroup.events has no frozen key (kernel older than 5.2?)", dir)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
