package containers

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, written as
// dockerd writes them for `run`: files of the container's directory
// bind-mounted over the image's, with --add-host, --dns, --dns-search and
// --dns-option applied. They are rewritten at every start (the address may
// have changed), without fsync: a crash only means a rewrite at next start.

// etcFileNames are the files of /etc the container gets from its directory.
var etcFileNames = map[string]bool{"hosts": true, "hostname": true, "resolv.conf": true}

// hostGateway is --add-host's name for the address of the host on the
// container's network (dockerd's host-gateway).
const hostGateway = "host-gateway"

// defaultHosts are the lines dockerd puts first in every /etc/hosts.
const defaultHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// defaultNameservers are dockerd's when the host has none the container can
// reach (only loopback ones, which are the host's own and not the container's).
var defaultNameservers = []string{"8.8.8.8", "8.8.4.4"}

// hostResolvConf is the host's resolver file; a var for tests.
var hostResolvConf = "/etc/resolv.conf"

// parseExtraHost splits an --add-host entry: NAME:IP or NAME=IP (an IPv6
// address may be in brackets), or NAME:host-gateway.
func parseExtraHost(e string) (name, ip string, err error) {
	sep := ":"
	if strings.Contains(e, "=") {
		sep = "="
	}
	name, ip, ok := strings.Cut(e, sep)
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if !ok || name == "" || strings.ContainsAny(name, " \t\n#") {
		return "", "", fmt.Errorf("%w: bad format for add-host: %q (want NAME:IP)", ErrInvalidArgument, e)
	}
	if ip == hostGateway {
		return name, ip, nil
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return "", "", fmt.Errorf("%w: invalid IP address in add-host: %q", ErrInvalidArgument, ip)
	}
	return name, ip, nil
}

// checkEtcOptions refuses a bad --add-host, --dns, --dns-search or
// --dns-option before anything is made.
func checkEtcOptions(cfg Config) error {
	for _, e := range cfg.ExtraHosts {
		_, ip, err := parseExtraHost(e)
		if err != nil {
			return err
		}
		if ip == hostGateway && cfg.NetworkMode != "bridge" {
			return fmt.Errorf("%w: --add-host %s: host-gateway needs the bridge network", ErrInvalidArgument, e)
		}
	}
	for _, d := range cfg.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("%w: invalid --dns %q: not an IP address", ErrInvalidArgument, d)
		}
	}
	for _, s := range cfg.DNSSearch {
		if s == "" || len(s) > 255 || strings.ContainsAny(s, " \t\n/") || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "-") {
			return fmt.Errorf("%w: invalid --dns-search %q: not a domain", ErrInvalidArgument, s)
		}
	}
	for _, o := range cfg.DNSOptions {
		if o == "" || strings.ContainsAny(o, " \t\n") {
			return fmt.Errorf("%w: invalid --dns-option %q", ErrInvalidArgument, o)
		}
	}
	return nil
}

// hostsFile is the container's /etc/hosts: the host's own for --network host
// (as dockerd), else the default lines and the container's address; then
// the --add-host entries.
func hostsFile(cfg Config, hostname string) ([]byte, error) {
	var b bytes.Buffer
	if cfg.NetworkMode == "host" {
		h, err := os.ReadFile("/etc/hosts")
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("read the host's /etc/hosts: %w", err)
		}
		b.Write(h)
		if len(h) > 0 && h[len(h)-1] != '\n' {
			b.WriteByte('\n')
		}
	} else {
		b.WriteString(defaultHosts)
	}
	for _, e := range cfg.ExtraHosts {
		name, ip, err := parseExtraHost(e)
		if err != nil {
			return nil, err
		}
		if ip == hostGateway {
			ip = cfg.Network.Gateway
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, name)
	}
	if ip := cfg.Network.IPAddress; ip != "" && cfg.NetworkMode != "host" {
		names := hostname
		if d := cfg.Domainname; d != "" {
			names = hostname + "." + d + " " + hostname // as dockerd
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, names)
	}
	return b.Bytes(), nil
}

// resolvConf is the container's /etc/resolv.conf: the host's, with
// loopback nameservers dropped unless the container shares the host's
// network, and --dns, --dns-search, --dns-option replacing their lines.
func resolvConf(cfg Config) ([]byte, error) {
	host, err := os.ReadFile(hostResolvConf)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read the host's %s: %w", hostResolvConf, err)
	}
	var ns, search, options, other []string
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "nameserver" && len(f) > 1:
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() && cfg.NetworkMode != "host" {
				continue
			}
			ns = append(ns, f[1])
		case (f[0] == "search" || f[0] == "domain") && len(f) > 1:
			search = f[1:]
		case f[0] == "options":
			options = append(options, f[1:]...)
		default:
			other = append(other, line)
		}
	}
	if len(cfg.DNS) > 0 {
		ns = cfg.DNS
	} else if len(ns) == 0 {
		ns = defaultNameservers
	}
	if len(cfg.DNSSearch) > 0 {
		search = cfg.DNSSearch
		if len(search) == 1 && search[0] == "." {
			search = nil // docker's way to say "no search domains"
		}
	}
	if len(cfg.DNSOptions) > 0 {
		options = cfg.DNSOptions
	}
	switch cfg.NetworkMode {
	case "none", "bridge", "host", "":
	default:
		// A user network: the daemon's embedded resolver answers in the
		// container and forwards to the nameservers above, as Docker's,
		// which also writes ndots:0 unless an ndots option is given.
		ns = []string{"127.0.0.11"}
		if !slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
			options = append(options, "ndots:0")
		}
	}
	var b bytes.Buffer
	for _, l := range other {
		b.WriteString(l + "\n")
	}
	for _, n := range ns {
		b.WriteString("nameserver " + n + "\n")
	}
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.Bytes(), nil
}

// EtcFile is the path of one of the container's hosts, hostname and
// resolv.conf files (for inspect's HostsPath, HostnamePath, ResolvConfPath).
func (e *Engine) EtcFile(id, name string) string {
	return filepath.Join(e.containerDir(id), name)
}

// withEtcFiles writes the container's hosts, hostname and resolv.conf and
// mounts them over the image's (read-only with --read-only, as dockerd).
func (e *Engine) withEtcFiles(s *specs.Spec, c Container) error {
	hostname := s.Hostname
	if c.Config.NetworkMode == "host" || c.Config.UTSMode == "host" {
		// The host's network or UTS namespace: its name, as dockerd writes it.
		if h, err := os.Hostname(); err == nil {
			hostname = h
		}
	}
	hosts, err := hostsFile(c.Config, hostname)
	if err != nil {
		return err
	}
	resolv, err := resolvConf(c.Config)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"hosts", hosts}, {"hostname", []byte(hostname + "\n")}, {"resolv.conf", resolv}} {
		if hasMount(s, "/etc/"+f.name) {
			continue // the user's -v FILE:/etc/hosts wins, as with dockerd
		}
		path := e.EtcFile(c.ID, f.name)
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			return fmt.Errorf("write the container's /etc/%s: %w", f.name, err)
		}
		opts := []string{"rbind", "rprivate"}
		if c.Config.ReadonlyRootfs {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/" + f.name, Type: "bind", Source: path, Options: opts})
	}
	return nil
}

func hasMount(s *specs.Spec, dst string) bool {
	for _, m := range s.Mounts {
		if filepath.Clean(m.Destination) == dst {
			return true
		}
	}
	return false
}
