package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

func newStartCommand() *cobra.Command {
	var attach, interactive bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if attach || interactive {
				if len(args) > 1 {
					return fmt.Errorf("you cannot start and attach multiple containers at once")
				}
				keys, err := parseDetachKeys(detachKeys)
				if err != nil {
					return err
				}
				ctr, _, err := c.ContainerInspect(commandContext(cmd), args[0])
				if err != nil {
					return c.apiError(err)
				}
				st := ctr.State
				return attachStartWait(cmd, c, ctr.ID, attachOptions{
					stdin:      interactive && ctr.Config != nil && ctr.Config.OpenStdin,
					tty:        ctr.Config != nil && ctr.Config.Tty,
					sigProxy:   true,
					started:    st != nil && st.Running,
					detachKeys: detachKeys, keys: keys,
				})
			}
			var errs, failed []string
			for _, id := range args {
				if err := c.ContainerStart(commandContext(cmd), id); err != nil {
					errs, failed = append(errs, c.apiError(err).Error()), append(failed, id)
					continue
				}
				fmt.Fprintln(streamsOf(cmd).out, id)
			}
			if len(errs) > 0 {
				errs = append(errs, "Error: failed to start containers: "+strings.Join(failed, ", "))
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Attach container's STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// newAttachCommand is docker's attach: the terminal joins a running
// container's streams until it exits or the detach keys are typed.
func newAttachCommand() *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ct, _, err := c.ContainerInspect(commandContext(cmd), args[0])
			if err != nil {
				return c.apiError(err)
			}
			if ct.State == nil || !ct.State.Running {
				return errors.New("You cannot attach to a stopped container, start it first")
			}
			if ct.State.Paused {
				return errors.New("You cannot attach to a paused container, unpause it first")
			}
			tty := ct.Config != nil && ct.Config.Tty
			stdin := !noStdin && ct.Config != nil && ct.Config.OpenStdin
			if tty && stdin && !isTerminal(cmd.InOrStdin()) {
				return errors.New("the input device is not a TTY")
			}
			return attachStartWait(cmd, c, ct.ID, attachOptions{
				stdin: stdin, tty: tty, sigProxy: sigProxy, started: true,
				detachKeys: detachKeys, keys: keys,
			})
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "Do not attach STDIN")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// forEachArg runs fn on every argument, prints the argument for each
// success (as docker's stop, kill and rm do, and the rm of services, nodes
// and volumes) and an error line for each failure.
func forEachArg(cmd *cobra.Command, args []string, fn func(c *apiClient, id string) error) error {
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []string
	for _, id := range args {
		if err := fn(c, id); err != nil {
			err = c.apiError(err)
			if strings.HasPrefix(err.Error(), "Cannot connect") {
				return err
			}
			errs = append(errs, err.Error())
			continue
		}
		fmt.Fprintln(streamsOf(cmd).out, id)
	}
	return joinErrors(errs)
}

func newStopCommand() *cobra.Command {
	var timeout int
	var signal string
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := apiclient.ContainerStopOptions{Signal: signal}
			if cmd.Flags().Changed("time") || cmd.Flags().Changed("timeout") {
				t := timeout
				opts.Timeout = &t
			}
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				return c.ContainerStop(commandContext(cmd), id, opts)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "Seconds to wait before killing the container")
	cmd.Flags().IntVar(&timeout, "timeout", 0, "Seconds to wait before killing the container")
	_ = cmd.Flags().MarkHidden("timeout")
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func newRestartCommand() *cobra.Command {
	var timeout int
	var signal string
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := apiclient.ContainerStopOptions{Signal: signal}
			if cmd.Flags().Changed("time") {
				t := timeout
				opts.Timeout = &t
			}
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				return c.ContainerRestart(commandContext(cmd), id, opts)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "Seconds to wait before killing the container")
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func newKillCommand() *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				return c.ContainerKill(commandContext(cmd), id, signal)
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container (default KILL)")
	return cmd
}

func newRmCommand(use string) *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				return c.ContainerRemove(commandContext(cmd), id, apiclient.ContainerRemoveOptions{Force: force, RemoveVolumes: volumes})
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "Remove anonymous volumes associated with the container")
	return cmd
}

// containerRow is one line of `ps`; its methods are the --format fields.
type containerRow struct {
	c       container.Summary
	status  string
	noTrunc bool
	now     time.Time
}

func (r containerRow) ID() string {
	if r.noTrunc {
		return r.c.ID
	}
	return shortID(r.c.ID)
}

func (r containerRow) Image() string {
	img := r.c.Image
	if img == "" {
		img = "<no image>"
	}
	if !r.noTrunc && strings.HasPrefix(img, "sha256:") {
		return shortID(img)
	}
	return img
}

func (r containerRow) Command() string    { return quoteCommand(r.c.Command, r.noTrunc) }
func (r containerRow) CreatedAt() string  { return time.Unix(r.c.Created, 0).String() }
func (r containerRow) RunningFor() string { return humanAgo(time.Unix(r.c.Created, 0), r.now) }
func (r containerRow) Ports() string      { return displayPorts(r.c.Ports) }
func (r containerRow) State() string      { return string(r.c.State) }
func (r containerRow) Status() string     { return r.status }

func (r containerRow) Size() string {
	if r.c.SizeRw == 0 && r.c.SizeRootFs == 0 {
		return "0B"
	}
	s := humanSize(r.c.SizeRw)
	if r.c.SizeRootFs > 0 {
		s += " (virtual " + humanSize(r.c.SizeRootFs) + ")"
	}
	return s
}

// Names lists the container's names without the leading "/"; legacy link
// names ("/other/alias") are shown only with --no-trunc, as in docker.
func (r containerRow) Names() string {
	var names []string
	for _, n := range r.c.Names {
		n = strings.TrimPrefix(n, "/")
		if !r.noTrunc && strings.Contains(n, "/") {
			continue
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func (r containerRow) Labels() string {
	var kv []string
	for k, v := range r.c.Labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// Label returns the value of one label ({{.Label "com.example.x"}}).
func (r containerRow) Label(name string) string { return r.c.Labels[name] }

func (r containerRow) Mounts() string {
	var m []string
	for _, mp := range r.c.Mounts {
		name := mp.Name
		if name == "" {
			name = mp.Source
		}
		if !r.noTrunc {
			name = ellipsis(name, 15)
		}
		m = append(m, name)
	}
	return strings.Join(m, ",")
}

func (r containerRow) Networks() string {
	if r.c.NetworkSettings == nil {
		return r.c.HostConfig.NetworkMode
	}
	var n []string
	for k := range r.c.NetworkSettings.Networks {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

func (r containerRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

var containerHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
	"Names": "NAMES", "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS", "Networks": "NETWORKS",
}

const defaultContainerFormat = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

// displayPorts renders the PORTS column as docker does: host mappings as
// "IP:HOST->CTR/proto", unpublished ports as "CTR/proto", consecutive
// ports of the same kind folded into ranges.
func displayPorts(ports []container.PortSummary) string {
	type group struct{ first, last uint16 }
	ps := append([]container.PortSummary(nil), ports...)
	for i := range ps {
		// A published port without an address is bound on all of them.
		if ps[i].PublicPort != 0 && !ps[i].IP.IsValid() {
			ps[i].IP = netip.IPv4Unspecified()
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.PrivatePort != b.PrivatePort {
			return a.PrivatePort < b.PrivatePort
		}
		if a.IP != b.IP {
			return a.IP.Less(b.IP)
		}
		if a.PublicPort != b.PublicPort {
			return a.PublicPort < b.PublicPort
		}
		return a.Type < b.Type
	})
	groups := map[string]*group{}
	var keys, result, mappings []string
	for _, p := range ps {
		key := p.Type
		if p.IP.IsValid() {
			if p.PublicPort != p.PrivatePort {
				host := netip.AddrPortFrom(p.IP, p.PublicPort).String()
				mappings = append(mappings, fmt.Sprintf("%s->%d/%s", host, p.PrivatePort, p.Type))
				continue
			}
			key = p.IP.String() + "/" + p.Type
		}
		g := groups[key]
		if g == nil {
			groups[key] = &group{p.PrivatePort, p.PrivatePort}
			keys = append(keys, key)
			continue
		}
		if p.PrivatePort == g.last+1 {
			g.last = p.PrivatePort
			continue
		}
		result = append(result, formPortGroup(key, g.first, g.last))
		groups[key] = &group{p.PrivatePort, p.PrivatePort}
	}
	for _, k := range keys {
		g := groups[k]
		result = append(result, formPortGroup(k, g.first, g.last))
	}
	return strings.Join(append(result, mappings...), ", ")
}

func formPortGroup(key string, first, last uint16) string {
	ip, proto, hasIP := strings.Cut(key, "/")
	if !hasIP {
		ip, proto = "", key
	}
	r := strconv.Itoa(int(first))
	if first != last {
		r += "-" + strconv.Itoa(int(last))
	}
	if ip != "" {
		// docker leaves IPv6 addresses of same-port groups unbracketed
		// (":::80->80/tcp"); kept for scripts that parse the column.
		r = ip + ":" + r + "->" + r
	}
	return r + "/" + proto
}

func newPsCommand(use string) *cobra.Command {
	var all, quiet, noTrunc, latest, size bool
	var last int
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS]",
		Short: "List containers",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if latest {
				last = 1
			}
			items, err := c.ContainerList(commandContext(cmd), apiclient.ContainerListOptions{
				All: all || last > 0, Limit: last, Filters: f, Size: size,
			})
			if err != nil {
				return c.apiError(err)
			}
			sort.SliceStable(items, func(i, j int) bool { return items[i].Created > items[j].Created })
			if last > 0 && len(items) > last {
				items = items[:last]
			}
			out := streamsOf(cmd).out
			if quiet {
				for _, it := range items {
					fmt.Fprintln(out, containerRow{c: it, noTrunc: noTrunc}.ID())
				}
				return nil
			}
			now := time.Now()
			rows := make([]any, 0, len(items))
			for _, it := range items {
				rows = append(rows, containerRow{c: it, status: statusOf(cmd, c, it, now), noTrunc: noTrunc, now: now})
			}
			if format == "" {
				format = "table"
			}
			def := defaultContainerFormat
			if size {
				def += "\t{{.Size}}" // as docker: -s adds the column
			}
			return renderRows(out, parseTableFormat(format, def), containerHeaders, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display container IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	fl.BoolVarP(&latest, "latest", "l", false, "Show the latest created container (includes all states)")
	fl.IntVarP(&last, "last", "n", -1, "Show n last created containers (includes all states)")
	fl.BoolVarP(&size, "size", "s", false, "Display total file sizes")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// statusOf is the STATUS cell: the daemon's own wording when it sends one,
// else derived from an inspect of the container.
func statusOf(cmd *cobra.Command, c *apiClient, it container.Summary, now time.Time) string {
	if it.Status != "" {
		return it.Status
	}
	ctr, _, err := c.ContainerInspect(commandContext(cmd), it.ID)
	if err != nil || ctr.State == nil {
		return containerStatus(string(it.State), 0, time.Time{}, time.Time{}, now)
	}
	st := ctr.State
	return containerStatus(string(st.Status), st.ExitCode, parseTime(st.StartedAt), parseTime(st.FinishedAt), now)
}

func newWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var errs []string
			for _, id := range args {
				result, errc := c.ContainerWait(commandContext(cmd), id, "")
				select {
				case res := <-result:
					fmt.Fprintln(streamsOf(cmd).out, res.StatusCode)
				case err := <-errc:
					errs = append(errs, c.apiError(err).Error())
				}
			}
			return joinErrors(errs)
		},
	}
}

func newTopCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.ContainerTop(commandContext(cmd), args[0], args[1:])
			if err != nil {
				return c.apiError(err)
			}
			tw := tabwriter.NewWriter(streamsOf(cmd).out, 20, 1, 3, ' ', 0)
			fmt.Fprintln(tw, strings.Join(res.Titles, "\t"))
			for _, p := range res.Processes {
				fmt.Fprintln(tw, strings.Join(p, "\t"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newCommitCommand() *cobra.Command {
	var message, author string
	var changes []string
	var pause bool
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			o := apiclient.ContainerCommitOptions{Comment: message, Author: author, Changes: changes, NoPause: !pause}
			if len(args) == 2 {
				if o.Repo, o.Tag, err = commitName(args[1]); err != nil {
					return err
				}
			}
			res, err := c.ContainerCommit(commandContext(cmd), args[0], o)
			if err != nil {
				return c.apiError(err)
			}
			fmt.Fprintln(streamsOf(cmd).out, res.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&message, "message", "m", "", "Commit message")
	cmd.Flags().StringVarP(&author, "author", "a", "", "Author (e.g., \"John Hannibal Smith <hannibal@a-team.com>\")")
	cmd.Flags().VarP((*stringArray)(&changes), "change", "c", "Apply Dockerfile instruction to the created image")
	cmd.Flags().BoolVarP(&pause, "pause", "p", true, "Pause container during commit")
	return cmd
}

// commitName splits commit's REPOSITORY[:TAG] into the repository, in
// full (docker.io/library/busybox), and the tag (latest when not given),
// as the daemon takes them; a digest is refused.
func commitName(ref string) (repo, tag string, err error) {
	r, err := parseImageRef(ref)
	if err != nil {
		return "", "", err
	}
	if r.digest != "" {
		return "", "", errors.New("refusing to create a tag with a digest reference")
	}
	r = r.WithDefaultTag()
	return r.Name(), r.tag, nil
}
