package containers

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/oci"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processArgs is the command a container runs: the config's entrypoint and
// cmd, each falling back to the image's as Docker does (a given entrypoint
// drops the image's cmd).
func processArgs(cfg Config, img ocispec.ImageConfig) []string {
	entry, cmd := img.Entrypoint, img.Cmd
	if cfg.Entrypoint != nil {
		entry, cmd = cfg.Entrypoint, nil
	}
	if cfg.Cmd != nil {
		cmd = cfg.Cmd
	}
	return append(append([]string{}, entry...), cmd...)
}

// mergeEnv overlays env on base by variable name, keeping base's order. An
// entry without "=" (NAME) removes NAME, as dockerd's
// ReplaceOrAppendEnvValues does: the API passes it through unresolved.
func mergeEnv(base, env []string) []string {
	out := append([]string{}, base...)
	index := map[string]int{}
	for i, kv := range out {
		index[strings.SplitN(kv, "=", 2)[0]] = i
	}
	removed := false
	for _, kv := range env {
		k, _, hasValue := strings.Cut(kv, "=")
		if !hasValue {
			if i, ok := index[k]; ok {
				out[i], removed = "", true
				delete(index, k)
			}
			continue
		}
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	if !removed {
		return out
	}
	kept := out[:0]
	for _, kv := range out {
		if kv != "" {
			kept = append(kept, kv)
		}
	}
	return kept
}

// buildSpec makes the OCI spec of a container whose /etc/passwd and
// /etc/group are db; nil for the checks of a create, which has no files
// (names are resolved at start).
// cgroupRoot is where the host's cgroups are mounted (checks of what the
// host can enforce).
func buildSpec(c Container, img ocispec.ImageConfig, db *userDB, cgroupRoot string) (*specs.Spec, error) {
	s := oci.DefaultSpec()
	s.Root = &specs.Root{Path: "rootfs", Readonly: c.Config.ReadonlyRootfs}
	s.Process.Args = append([]string{c.Path}, c.Args...)
	hostname := c.Config.Hostname
	if hostname == "" {
		hostname = c.ID[:12]
		// With the host's network (or UTS namespace) the container is
		// named as the host, as dockerd names it.
		if c.Config.NetworkMode == "host" || c.Config.UTSMode == "host" {
			if h, err := os.Hostname(); err == nil {
				hostname = h
			}
		}
	}
	env := mergeEnv([]string{defaultPath}, img.Env)
	env = mergeEnv(env, []string{"HOSTNAME=" + hostname})
	if c.Config.Tty {
		// As dockerd: programs in a TTY container get a terminal type.
		env = mergeEnv(env, []string{"TERM=xterm"})
	}
	env = mergeEnv(env, c.Config.Env)
	s.Process.Terminal = c.Config.Tty
	s.Process.Env = nil
	if err := oci.WithEnv(s, env...); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	cwd := c.Config.WorkingDir
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !strings.HasPrefix(cwd, "/") {
		return nil, fmt.Errorf("%w: the working directory '%s' is invalid, it needs to be an absolute path", ErrInvalidArgument, cwd)
	}
	if err := oci.WithCwd(s, cwd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	user := c.Config.User
	if user == "" {
		user = img.User
	}
	u, err := processUser(db, user)
	if err != nil {
		return nil, err
	}
	s.Process.User = u
	s.Process.Env = withHome(s.Process.Env, db, u.UID)
	if c.Config.UTSMode == "host" {
		// The host's own names: none is set (the runtime refuses a name
		// without a UTS namespace of the container's).
		oci.WithoutNamespace(s, specs.UTSNamespace)
	} else {
		oci.WithHostname(s, hostname)
		s.Domainname = c.Config.Domainname
	}
	if err := checkSwap(c.Config, cgroupRoot); err != nil {
		return nil, err
	}
	if c.Config.Memory != 0 {
		if err := oci.WithMemory(s, c.Config.Memory, c.Config.MemorySwap); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		if c.Config.MemorySwap == 0 && !swapLimitSupported(cgroupRoot) {
			// Docker's default (swap = twice the memory) cannot be set
			// without swap accounting: memory only, as dockerd does.
			s.Linux.Resources.Memory.Swap = nil
		}
	}
	if c.Config.NanoCPUs != 0 {
		if err := oci.WithCPUs(s, float64(c.Config.NanoCPUs)/1e9); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
	}
	if c.Config.CPUShares > 0 {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		sh := uint64(c.Config.CPUShares)
		s.Linux.Resources.CPU.Shares = &sh
	}
	if c.Config.PidsLimit > 0 {
		oci.WithPidsLimit(s, c.Config.PidsLimit)
	}
	switch {
	case c.Config.NetworkMode == "host":
		oci.WithHostNetwork(s)
	case c.Config.NetNSPath != "":
		if err := oci.WithNetNSPath(s, c.Config.NetNSPath); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
	}
	if c.Config.NoNewPrivileges {
		oci.WithNoNewPrivileges(s)
	}
	if err := withHostOptions(s, c.Config, db); err != nil {
		return nil, err
	}
	for _, b := range c.Config.Binds {
		src, dst, ro, err := ParseBind(b)
		if err != nil {
			return nil, err
		}
		if err := oci.WithBind(s, src, dst, ro); err != nil {
			return nil, fmt.Errorf("%w: bind %s: %v", ErrInvalidArgument, b, err)
		}
	}
	// --tmpfs and --mount type=tmpfs, the shallower first.
	targets := make([]string, 0, len(c.Config.Tmpfs))
	for t := range c.Config.Tmpfs {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	for _, t := range targets {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: t, Type: "tmpfs", Source: "tmpfs", Options: strings.Split(c.Config.Tmpfs[t], ",")})
	}
	return s, nil
}

// ParseBind parses HOSTDIR:CTRDIR[:ro|rw].
func ParseBind(b string) (src, dst string, ro bool, err error) {
	parts := strings.Split(b, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", false, fmt.Errorf("%w: invalid volume specification: '%s'", ErrInvalidArgument, b)
	}
	if !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) {
		return "", "", false, fmt.Errorf("%w: invalid volume specification: '%s': paths must be absolute (named volumes are not supported)", ErrInvalidArgument, b)
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			ro = true
		case "rw":
		default:
			return "", "", false, fmt.Errorf("%w: invalid mode %q in volume specification '%s'", ErrInvalidArgument, parts[2], b)
		}
	}
	if _, err := os.Stat(parts[0]); err != nil {
		return "", "", false, fmt.Errorf("%w: bind source path does not exist: %s", ErrInvalidArgument, parts[0])
	}
	return parts[0], parts[1], ro, nil
}

// processUser is the user a container's process runs as, from a --user
// value ("" for root): its ids and supplementary groups. The groups start
// with the primary gid, as Docker has set them since 20.10.18
// (CVE-2022-36109): a process whose primary group is denied something by a
// file's group bits is denied it still after a setgid to another group.
func processUser(db *userDB, user string) (specs.User, error) {
	if user == "" {
		user = "0"
	}
	uid, gid, err := resolveUser(db, user)
	if err != nil {
		return specs.User{}, err
	}
	return specs.User{UID: uid, GID: gid, AdditionalGids: append([]uint32{gid}, userGroups(db, user, uid, gid)...)}, nil
}

// userHome is the HOME a process of uid gets where its environment has
// none, as runc sets it: the uid's home in the container's /etc/passwd,
// else "/".
func userHome(db *userDB, uid uint32) string {
	if e, ok := lookupDB(db.passwdFile(), "", int(uid)); ok && e.home != "" {
		return e.home
	}
	return "/"
}

// withHome appends HOME=userHome to env unless it sets HOME already.
func withHome(env []string, db *userDB, uid uint32) []string {
	if hasEnv(env, "HOME") {
		return env
	}
	return append(env, "HOME="+userHome(db, uid))
}

// hasEnv tells whether env sets (or, NAME without "=", unsets) k.
func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name == k {
			return true
		}
	}
	return false
}

// envValue is k's value in env ("" when unset).
func envValue(env []string, k string) string {
	for _, kv := range env {
		if name, v, ok := strings.Cut(kv, "="); ok && name == k {
			return v
		}
	}
	return ""
}

// resolveUser turns "uid[:gid]" or "name[:group]" into numbers, reading the
// container's /etc/passwd and /etc/group for names.
func resolveUser(db *userDB, user string) (uint32, uint32, error) {
	name, group, hasGroup := strings.Cut(user, ":")
	uid, gid := -1, -1
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid = int(n)
		gid = 0
		if e, ok := lookupDB(db.passwdFile(), "", uid); ok {
			gid = e.gid
		}
	} else if e, ok := lookupDB(db.passwdFile(), name, -1); ok {
		uid, gid = e.id, e.gid
	} else {
		return 0, 0, fmt.Errorf("%w: unable to find user %s: no matching entries in passwd file", ErrInvalidArgument, name)
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			gid = int(n)
		} else if e, ok := lookupDB(db.groupFile(), group, -1); ok {
			gid = e.id
		} else {
			return 0, 0, fmt.Errorf("%w: unable to find group %s: no matching entries in group file", ErrInvalidArgument, group)
		}
	}
	return uint32(uid), uint32(gid), nil
}

type dbEntry struct {
	name    string
	id, gid int
	home    string   // a passwd entry's sixth field
	members []string // a group's fourth field
}

// lookupDB finds an entry of a passwd or group file by name, or by id when
// name is empty.
func lookupDB(b []byte, name string, id int) (dbEntry, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 {
			continue
		}
		n, err := strconv.Atoi(fields[2])
		if err != nil {
			continue
		}
		g := n
		if len(fields) > 3 {
			if v, err := strconv.Atoi(fields[3]); err == nil {
				g = v
			}
		}
		if (name != "" && fields[0] == name) || (name == "" && n == id) {
			e := dbEntry{name: fields[0], id: n, gid: g}
			if len(fields) > 5 {
				e.home = fields[5]
			}
			return e, true
		}
	}
	return dbEntry{}, false
}

// userGroups are the supplementary groups of user (uid or name) as Docker
// (runc's GetExecUser) sets them: every group of the container's /etc/group
// that lists the user's name, besides its primary gid; none when the user
// names a group explicitly (uid:gid, name:group).
func userGroups(db *userDB, user string, uid, gid uint32) []uint32 {
	name, _, explicit := strings.Cut(user, ":")
	if explicit {
		return nil
	}
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		e, ok := lookupDB(db.passwdFile(), "", int(uid))
		if !ok {
			return nil
		}
		name = e.name
	}
	var out []uint32
	for _, line := range strings.Split(string(db.groupFile()), "\n") {
		fields := strings.Split(line, ":")
		if len(fields) < 4 {
			continue
		}
		g, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil || uint32(g) == gid {
			continue
		}
		for _, m := range strings.Split(fields[3], ",") {
			if strings.TrimSpace(m) == name {
				out = append(out, uint32(g))
				break
			}
		}
	}
	return out
}
