package cli

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
)

// parseSize parses a memory size as docker's -m does: a number of bytes
// with an optional binary unit (b, k, m, g, t; "kb", "kib" also accepted).
func parseSize(s string) (int64, error) {
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		// go-units reports some mistakes as strconv errors or "invalid
		// suffix"; one wording for all keeps the message predictable.
		return 0, fmt.Errorf("invalid size: '%s'", s)
	}
	return n, nil
}

// memBytes is a pflag.Value holding a size in bytes (0 = unset).
type memBytes int64

func (m *memBytes) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*m = memBytes(n)
	return nil
}

func (m *memBytes) String() string {
	if *m == 0 {
		return ""
	}
	return units.BytesSize(float64(*m))
}

func (m *memBytes) Type() string { return "bytes" }

// memSwapBytes is --memory-swap: a size, or -1 for unlimited swap.
type memSwapBytes int64

func (m *memSwapBytes) Set(s string) error {
	if s == "-1" {
		*m = -1
		return nil
	}
	return (*memBytes)(m).Set(s)
}

func (m *memSwapBytes) String() string {
	if *m == -1 {
		return "-1"
	}
	return (*memBytes)(m).String()
}

func (m *memSwapBytes) Type() string { return "bytes" }

// ulimitList is --ulimit NAME=SOFT[:HARD], parsed as docker does (its
// errors: "invalid ulimit type: x", "ulimit soft limit must be less than
// or equal to hard limit: 2 > 1").
type ulimitList []*container.Ulimit

func (l *ulimitList) Set(s string) error {
	u, err := units.ParseUlimit(s)
	if err != nil {
		return err
	}
	for i, old := range *l {
		if old.Name == u.Name {
			(*l)[i] = u // the last one wins, as in docker
			return nil
		}
	}
	*l = append(*l, u)
	return nil
}

func (l *ulimitList) String() string {
	var out []string
	for _, u := range *l {
		out = append(out, u.String())
	}
	return "[" + strings.Join(out, " ") + "]"
}

func (l *ulimitList) Type() string { return "ulimit" }

// parseCPUs turns --cpus (a decimal number of CPUs) into NanoCPUs, refusing
// values finer than a nano-CPU, as docker does.
func parseCPUs(s string) (int64, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, fmt.Errorf("failed to parse %v as a rational number", s)
	}
	if r.Sign() < 0 {
		return 0, fmt.Errorf("invalid number of CPUs %v: must not be negative", s)
	}
	nano := r.Mul(r, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		return 0, fmt.Errorf("value is too precise")
	}
	if !nano.Num().IsInt64() {
		return 0, fmt.Errorf("invalid number of CPUs %v: too large", s)
	}
	return nano.Num().Int64(), nil
}

// nanoCPUs is a pflag.Value for --cpus.
type nanoCPUs int64

func (n *nanoCPUs) Set(s string) error {
	v, err := parseCPUs(s)
	if err != nil {
		return err
	}
	*n = nanoCPUs(v)
	return nil
}

func (n *nanoCPUs) String() string {
	if *n == 0 {
		return ""
	}
	return big.NewRat(int64(*n), 1e9).FloatString(3)
}

func (n *nanoCPUs) Type() string { return "decimal" }

// humanSize renders a size as docker's tables do: three significant digits,
// decimal units ("1.24MB", "4.1kB", "0B").
func humanSize(n int64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// humanAgo renders how long ago t was, as docker's CREATED columns do
// ("2 minutes ago", "Less than a second ago").
func humanAgo(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return units.HumanDuration(now.Sub(t)) + " ago"
}

// containerStatus renders the STATUS column from a container's state, the
// way dockerd words Summary.Status; used when the daemon left Status empty.
func containerStatus(state string, exitCode int, startedAt, finishedAt, now time.Time) string {
	switch state {
	case "running":
		if startedAt.IsZero() {
			return "Up"
		}
		return "Up " + units.HumanDuration(now.Sub(startedAt))
	case "paused":
		return "Up " + units.HumanDuration(now.Sub(startedAt)) + " (Paused)"
	case "restarting":
		return fmt.Sprintf("Restarting (%d) %s", exitCode, humanAgo(finishedAt, now))
	case "exited":
		if finishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", exitCode)
		}
		return fmt.Sprintf("Exited (%d) %s", exitCode, humanAgo(finishedAt, now))
	case "created", "":
		return "Created"
	case "removing":
		return "Removal In Progress"
	case "dead":
		return "Dead"
	}
	return strings.ToUpper(state[:1]) + state[1:]
}

// ellipsis shortens s to at most n runes, ending with "…" when cut, like
// docker's table cells.
func ellipsis(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// shortID is the 12-hex-digit form of an ID, without any "sha256:" prefix.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// parseTime reads the RFC 3339 times of inspect responses; the zero time
// ("0001-01-01T00:00:00Z") and bad input give the zero Time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// quoteCommand is the COMMAND cell of ps: quoted, truncated unless noTrunc.
func quoteCommand(cmd string, noTrunc bool) string {
	if !noTrunc {
		cmd = ellipsis(cmd, 20)
	}
	return strconv.Quote(cmd)
}

// humanBinarySize renders a size in binary units ("7.6GiB"), as docker info does.
func humanBinarySize(n int64) string {
	return units.BytesSize(float64(n))
}
