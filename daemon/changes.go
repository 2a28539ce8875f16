package daemon

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// parseChanges applies `import --change` instructions (Dockerfile syntax,
// one per value) to an empty image config. The instructions docker import
// accepts are honoured: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME,
// WORKDIR, STOPSIGNAL; anything else is refused by name.
func parseChanges(changes []string) (ocispec.ImageConfig, error) {
	return applyChanges(ocispec.ImageConfig{}, changes)
}

// applyChanges applies the instructions of parseChanges to a copy of cfg,
// as dockerd applies `commit --change` over the container's config: ENV,
// LABEL, EXPOSE and VOLUME add to what cfg has, the others replace it, and
// an ENTRYPOINT with no CMD before it among the changes clears cfg's Cmd,
// as an ENTRYPOINT resets CMD in a Dockerfile.
func applyChanges(cfg ocispec.ImageConfig, changes []string) (ocispec.ImageConfig, error) {
	cfg.Env = slices.Clone(cfg.Env)
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.ExposedPorts = maps.Clone(cfg.ExposedPorts)
	cfg.Volumes = maps.Clone(cfg.Volumes)
	cmdSet := false
	for _, ch := range changes {
		ch = strings.TrimSpace(ch)
		if ch == "" {
			continue
		}
		instr, rest, _ := strings.Cut(ch, " ")
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return cfg, badRequest("invalid change %q: %s needs an argument", ch, strings.ToUpper(instr))
		}
		switch strings.ToUpper(instr) {
		case "CMD":
			cfg.Cmd, cmdSet = commandForm(rest), true
		case "ENTRYPOINT":
			cfg.Entrypoint = commandForm(rest)
			if !cmdSet {
				cfg.Cmd = nil
			}
		case "ENV":
			kvs, err := keyValues(rest, true)
			if err != nil {
				return cfg, badRequest("invalid change %q: %v", ch, err)
			}
			for _, kv := range kvs {
				cfg.Env = setEnv(cfg.Env, kv[0], kv[1])
			}
		case "LABEL":
			kvs, err := keyValues(rest, false)
			if err != nil {
				return cfg, badRequest("invalid change %q: %v", ch, err)
			}
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			for _, kv := range kvs {
				cfg.Labels[kv[0]] = kv[1]
			}
		case "EXPOSE":
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range strings.Fields(rest) {
				port, err := network.ParsePort(p)
				if err != nil {
					return cfg, badRequest("invalid change %q: %v", ch, err)
				}
				cfg.ExposedPorts[port.String()] = struct{}{}
			}
		case "VOLUME":
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			for _, v := range listForm(rest) {
				cfg.Volumes[v] = struct{}{}
			}
		case "USER":
			cfg.User = rest
		case "WORKDIR":
			cfg.WorkingDir = rest
		case "STOPSIGNAL":
			cfg.StopSignal = rest
		default:
			return cfg, badRequest("%s is not a valid change command", strings.ToUpper(instr))
		}
	}
	return cfg, nil
}

// commandForm reads the exec form (a JSON array) or the shell form, which
// runs under /bin/sh -c as in a Dockerfile.
func commandForm(s string) []string {
	if l := listForm(s); strings.HasPrefix(s, "[") && l != nil {
		return l
	}
	return []string{"/bin/sh", "-c", s}
}

// listForm reads a JSON array of strings, or else space-separated words.
func listForm(s string) []string {
	var l []string
	if strings.HasPrefix(s, "[") && json.Unmarshal([]byte(s), &l) == nil {
		return l
	}
	return strings.Fields(s)
}

// keyValues reads "k=v k2=\"v 2\"" or, for ENV, the legacy "k v with spaces".
func keyValues(s string, legacy bool) ([][2]string, error) {
	first := strings.Fields(s)[0]
	if !strings.Contains(first, "=") {
		if !legacy {
			return nil, errMissingEquals
		}
		k, v, _ := strings.Cut(s, " ")
		return [][2]string{{k, strings.TrimSpace(v)}}, nil
	}
	var out [][2]string
	for _, w := range shellWords(s) {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, errMissingEquals
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

type changeError string

func (e changeError) Error() string { return string(e) }

const errMissingEquals = changeError("want KEY=VALUE pairs")

// shellWords splits on spaces outside double or single quotes and drops
// the quotes, which is as much of shell quoting as ENV and LABEL need.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}
