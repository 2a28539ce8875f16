package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrInvalidEnv is wrapped by every -e/--env-file parse error.
var ErrInvalidEnv = errors.New("invalid environment variable")

// parseEnv resolves one -e value: "K=V" is kept; a bare "K" takes its value
// from lookup (the CLI's own environment) and is dropped when unset, which
// is what a docker user observes (the variable is not set in the container).
func parseEnv(v string, lookup func(string) (string, bool)) (string, bool, error) {
	k, _, hasValue := strings.Cut(v, "=")
	if k == "" {
		return "", false, fmt.Errorf("%w: %s", ErrInvalidEnv, v)
	}
	if hasValue {
		return v, true, nil
	}
	if strings.ContainsAny(k, " \t") {
		return "", false, fmt.Errorf("%w: variable '%s' contains whitespaces", ErrInvalidEnv, k)
	}
	if val, ok := lookup(k); ok {
		return k + "=" + val, true, nil
	}
	return "", false, nil
}

// parseEnvList resolves -e values in order.
func parseEnvList(vals []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, v := range vals {
		e, ok, err := parseEnv(v, lookup)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// parseEnvFileContent reads an --env-file: one variable a line, "#" lines
// and blank lines skipped, leading whitespace trimmed, bare names taken
// from lookup.
func parseEnvFileContent(name, content string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(content))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if n == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		if strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%w: %s line %d: variable '%s' contains whitespaces", ErrInvalidEnv, name, n, k)
		}
		e, ok, err := parseEnv(line, lookup)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", name, n, err)
		}
		if ok {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read env file %s: %w", name, err)
	}
	return out, nil
}

// readEnvFiles reads every --env-file in order.
func readEnvFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("open env file: %w", err)
		}
		vars, err := parseEnvFileContent(p, string(b), os.LookupEnv)
		if err != nil {
			return nil, err
		}
		out = append(out, vars...)
	}
	return out, nil
}

// parseLabels turns -l K=V values into a map; a bare K gets an empty value.
func parseLabels(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, _ := strings.Cut(v, "=")
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("invalid label: %q: empty name", v)
		}
		out[k] = val
	}
	return out, nil
}

// readLabelFiles reads --label-file files: one K=V label a line; blank
// lines and lines starting with # are skipped, as in docker.
func readLabelFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("open label file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				out = append(out, line)
			}
		}
	}
	return out, nil
}
