package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// Lifecycle and observation commands: pause, unpause, rename, update, port,
// diff, export and events (stats are in stats.go).

// observeCommands are the commands both `shoal` and `shoal container` have.
func observeCommands() []*cobra.Command {
	return []*cobra.Command{
		newPauseCommand(), newUnpauseCommand(), newRenameCommand(), newUpdateCommand(), newPortCommand(),
		newDiffCommand(), newExportCommand(), newStatsCommand(),
	}
}

func newPauseCommand() *cobra.Command {
	return newFreezeCommand("pause", "Pause all processes within one or more containers",
		func(c *apiClient, cmd *cobra.Command, id string) error {
			return c.ContainerPause(commandContext(cmd), id)
		})
}

func newUnpauseCommand() *cobra.Command {
	return newFreezeCommand("unpause", "Unpause all processes within one or more containers",
		func(c *apiClient, cmd *cobra.Command, id string) error {
			return c.ContainerUnpause(commandContext(cmd), id)
		})
}

// newFreezeCommand is pause or unpause: fn on every container named.
func newFreezeCommand(use, short string, fn func(c *apiClient, cmd *cobra.Command, id string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " CONTAINER [CONTAINER...]",
		Short: short,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, id string) error { return fn(c, cmd, id) })
		},
	}
}

func newRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := strings.TrimSpace(args[1])
			if name == "" || strings.TrimSpace(args[0]) == "" {
				return errors.New("Error: Neither old nor new names may be empty")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.ContainerRename(commandContext(cmd), args[0], name); err != nil {
				return c.apiError(err)
			}
			return nil
		},
	}
}

func newUpdateCommand() *cobra.Command {
	var memory memBytes
	var swap memSwapBytes
	var cpus nanoCPUs
	var shares, period, quota int64
	var pids int64
	var cpusetCpus, cpusetMems, restart string
	var reservation memBytes
	var blkio uint16
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().NFlag() == 0 || (cmd.Flags().NFlag() == 1 && cmd.Flags().Changed("host")) {
				return StatusError{Status: "you must provide one or more flags when using this command", Code: 125}
			}
			update := container.UpdateConfig{Resources: container.Resources{
				Memory: int64(memory), MemorySwap: int64(swap), NanoCPUs: int64(cpus), CPUShares: shares,
				CPUPeriod: period, CPUQuota: quota, CpusetCpus: cpusetCpus, CpusetMems: cpusetMems,
				MemoryReservation: int64(reservation), BlkioWeight: blkio,
			}}
			if cmd.Flags().Changed("pids-limit") {
				update.PidsLimit = &pids
			}
			if restart != "" {
				p, err := parseRestartPolicy(restart)
				if err != nil {
					return err
				}
				update.RestartPolicy = p
			}
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				_, err := c.ContainerUpdate(commandContext(cmd), id, update)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.VarP(&memory, "memory", "m", "Memory limit")
	fl.Var(&swap, "memory-swap", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	fl.Var(&cpus, "cpus", "Number of CPUs")
	fl.Int64VarP(&shares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fl.Int64Var(&pids, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	fl.StringVar(&cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fl.StringVar(&cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	// Sent so that the daemon names what it does not apply.
	fl.Int64Var(&period, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	fl.Int64Var(&quota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	fl.Var(&reservation, "memory-reservation", "Memory soft limit")
	fl.Uint16Var(&blkio, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable")
	fl.StringVar(&restart, "restart", "", "Restart policy to apply when a container exits")
	return cmd
}

func newPortCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctr, _, err := c.ContainerInspect(commandContext(cmd), args[0])
			if err != nil {
				return c.apiError(err)
			}
			var ports network.PortMap
			if ns := ctr.NetworkSettings; ns != nil {
				ports = ns.Ports
			}
			out := streamsOf(cmd).out
			if len(args) == 2 {
				spec := args[1]
				if !strings.Contains(spec, "/") {
					spec += "/tcp"
				}
				p, err := network.ParsePort(spec)
				if err != nil {
					return fmt.Errorf("Error: invalid port (%s): %w", args[1], err)
				}
				bindings := ports[p]
				if len(bindings) == 0 {
					return fmt.Errorf("Error: No public port '%s' published for %s", p, args[0])
				}
				for _, b := range bindings {
					fmt.Fprintln(out, bindingString(b))
				}
				return nil
			}
			var lines []string
			for p, bs := range ports {
				for _, b := range bs {
					lines = append(lines, p.String()+" -> "+bindingString(b))
				}
			}
			sort.Strings(lines)
			for _, l := range lines {
				fmt.Fprintln(out, l)
			}
			return nil
		},
	}
}

// bindingString is HOST_IP:HOST_PORT, IPv6 addresses bracketed, as docker port.
func bindingString(b network.PortBinding) string {
	ip := "0.0.0.0"
	if b.HostIP.IsValid() {
		ip = b.HostIP.String()
	}
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return ip + ":" + b.HostPort
}

func newDiffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			changes, err := c.ContainerDiff(commandContext(cmd), args[0])
			if err != nil {
				return c.apiError(err)
			}
			out := streamsOf(cmd).out
			for _, ch := range changes {
				kind := "C"
				switch ch.Kind {
				case container.ChangeAdd:
					kind = "A"
				case container.ChangeDelete:
					kind = "D"
				}
				fmt.Fprintln(out, kind, ch.Path)
			}
			return nil
		},
	}
}

func newExportCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeArchive(cmd, output, func(c *apiClient) (io.ReadCloser, error) {
				return c.ContainerExport(commandContext(cmd), args[0])
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// writeArchive copies the tar open returns to the file output (written
// whole or not at all) or, when output is empty, to stdout unless that is a
// terminal (save and export).
func writeArchive(cmd *cobra.Command, output string, open func(c *apiClient) (io.ReadCloser, error)) error {
	out := streamsOf(cmd).out
	if output == "" && isTerminal(out) {
		return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
	}
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := open(c)
	if err != nil {
		return c.apiError(err)
	}
	defer rc.Close()
	if output == "" {
		_, err := io.Copy(out, rc)
		return err
	}
	return writeFileAtomic(output, rc)
}

func newEventsCommand() *cobra.Command {
	var since, until, format string
	var filterArgs []string
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			var render func(io.Writer, events.Message) error
			switch {
			case format == "":
				render = writeEvent
			case format == "json":
				format = "{{json .}}"
				fallthrough
			default:
				tmpl, err := parseTemplate(format)
				if err != nil {
					return err
				}
				render = func(w io.Writer, m events.Message) error {
					if err := tmpl.Execute(w, m); err != nil {
						return err
					}
					_, err := fmt.Fprintln(w)
					return err
				}
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			msgs, errc := c.Events(commandContext(cmd), apiclient.EventsOptions{Since: since, Until: until, Filters: f})
			out := streamsOf(cmd).out
			for {
				select {
				case m := <-msgs:
					if err := render(out, m); err != nil {
						return err
					}
				case err := <-errc:
					if err == nil || errors.Is(err, io.EOF) {
						return nil
					}
					return c.apiError(err)
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "Show all events created since timestamp")
	fl.StringVar(&until, "until", "", "Stream events until this timestamp")
	fl.VarP((*stringArray)(&filterArgs), "filter", "f", "Filter output based on conditions provided")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

// writeEvent prints one event as docker events does:
// TIME TYPE ACTION ID (k=v, ...), attributes sorted.
func writeEvent(w io.Writer, m events.Message) error {
	t := time.Unix(0, m.TimeNano)
	if m.TimeNano == 0 {
		t = time.Unix(m.Time, 0)
	}
	line := t.Format("2006-01-02T15:04:05.000000000Z07:00") + " " + string(m.Type) + " " + string(m.Action) + " " + m.Actor.ID
	if len(m.Actor.Attributes) > 0 {
		keys := make([]string, 0, len(m.Actor.Attributes))
		for k := range m.Actor.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kv := make([]string, 0, len(keys))
		for _, k := range keys {
			kv = append(kv, k+"="+m.Actor.Attributes[k])
		}
		line += " (" + strings.Join(kv, ", ") + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
