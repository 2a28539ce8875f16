package logs

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// The log drivers: Docker's json-file (the default), local (a compact binary
// record stream, rotated by default) and none (nothing kept).
const (
	DriverJSONFile = "json-file"
	DriverLocal    = "local"
	DriverNone     = "none"
)

// Config is a container's log driver with its checked options. The zero
// Config is json-file without rotation (containers made before drivers).
type Config struct {
	Driver string `json:"driver,omitempty"`
	// MaxSize is the size in bytes at which the log is rotated; 0 never.
	MaxSize int64 `json:"maxSize,omitempty"`
	// MaxFile is how many files are kept, the live one included.
	MaxFile int `json:"maxFile,omitempty"`
	// Compress gzips rotated files (x.log.1.gz).
	Compress bool `json:"compress,omitempty"`
}

// Name names the driver, "" being json-file.
func (c Config) Name() string { return c.driver() }

func (c Config) driver() string {
	if c.Driver == "" {
		return DriverJSONFile
	}
	return c.Driver
}

// maxFiles is MaxFile with its floor of one file.
func (c Config) maxFiles() int { return max(c.MaxFile, 1) }

// optKeys are the options each driver applies. json-file's labels and env
// options (and their -regex forms) choose the attributes that
// `logs --details` shows.
var optKeys = map[string][]string{
	DriverJSONFile: {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex"},
	DriverLocal:    {"max-size", "max-file", "compress"},
	DriverNone:     {},
}

// ParseConfig checks a driver and its --log-opt options as dockerd does, with
// dockerd's wording, and returns the Config they make.
func ParseConfig(driver string, opts map[string]string) (Config, error) {
	if driver == "" {
		driver = DriverJSONFile
	}
	keys, ok := optKeys[driver]
	if !ok {
		return Config{}, fmt.Errorf("logger: no log driver named '%s' is registered", driver)
	}
	for k := range opts {
		if !containsString(keys, k) {
			if driver == DriverJSONFile {
				return Config{}, fmt.Errorf("unknown log opt '%s' for json-file log driver", k)
			}
			return Config{}, fmt.Errorf("unknown log opt '%s' for log driver %s", k, driver)
		}
	}
	for _, k := range []string{"labels-regex", "env-regex"} {
		if v, ok := opts[k]; ok {
			if _, err := regexp.Compile(v); err != nil {
				return Config{}, fmt.Errorf("log opt %s: %w", k, err)
			}
		}
	}
	cfg := Config{Driver: driver}
	if driver == DriverLocal {
		// dockerd's local driver defaults.
		cfg.MaxSize, cfg.MaxFile, cfg.Compress = 20*1000*1000, 5, true
	}
	if v, ok := opts["max-size"]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil {
			return Config{}, fmt.Errorf("log opt max-size: %w", err)
		}
		if n <= 0 {
			return Config{}, errors.New("max-size must be a positive number")
		}
		cfg.MaxSize = n
	}
	if v, ok := opts["max-file"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return Config{}, fmt.Errorf("log opt max-file %q: not a number", v)
		}
		if n < 1 {
			return Config{}, errors.New("max-file cannot be less than 1")
		}
		cfg.MaxFile = n
	}
	if driver == DriverJSONFile && cfg.MaxFile == 0 {
		cfg.MaxFile = 1
	}
	if v, ok := opts["compress"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("log opt compress %q: want true or false", v)
		}
		cfg.Compress = b
		if b && driver == DriverJSONFile && (cfg.MaxFile < 2 || cfg.MaxSize == 0) {
			return Config{}, errors.New("compress cannot be true when max-file is less than 2 or max-size is not set")
		}
	}
	if cfg.Compress && driver == DriverLocal && cfg.MaxFile < 2 {
		return Config{}, errors.New("compression cannot be enabled when max file count is 1")
	}
	if cfg.MaxSize == 0 {
		cfg.MaxFile = 1 // nothing rotates: one file
	}
	return cfg, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Details renders the attributes that json-file's labels/env options pick
// from a container's labels and environment, as dockerd's `logs --details`
// prefix: key=value pairs sorted by key, query-escaped, joined by commas.
// Regexes were checked by ParseConfig.
func Details(opts map[string]string, labels map[string]string, env []string) string {
	attrs := map[string]string{}
	pick := func(list, re string, vals map[string]string) {
		for _, k := range strings.Split(list, ",") {
			if v, ok := vals[k]; ok && k != "" {
				attrs[k] = v
			}
		}
		if re == "" {
			return
		}
		if r, err := regexp.Compile(re); err == nil {
			for k, v := range vals {
				if r.MatchString(k) {
					attrs[k] = v
				}
			}
		}
	}
	pick(opts["labels"], opts["labels-regex"], labels)
	envs := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			envs[k] = v
		}
	}
	pick(opts["env"], opts["env-regex"], envs)
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = url.QueryEscape(k) + "=" + url.QueryEscape(attrs[k])
	}
	return strings.Join(parts, ",")
}

// ParseOpts reads --log-opt KEY=VALUE flags into a map.
func ParseOpts(flags []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid log opt %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}
