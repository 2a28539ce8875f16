package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/volume"
	"github.com/spf13/cobra"
)

// shoal volume create/ls/inspect/rm/prune, with docker's flags.

func newVolumeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes", Args: noArgs}
	cmd.AddCommand(newVolumeCreateCommand(), newVolumeLsCommand(), newVolumeInspectCommand(),
		newVolumeRmCommand(), newVolumePruneCommand())
	return cmd
}

// parseDriverOpts turns --opt K=V values into a map; a value without "="
// is refused, as docker refuses it.
func parseDriverOpts(vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid argument %q for \"-o, --opt\" flag: not KEY=VALUE", v)
		}
		out[k] = val
	}
	return out, nil
}

func newVolumeCreateCommand() *cobra.Command {
	var driver string
	var opts, labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := parseDriverOpts(opts)
			if err != nil {
				return err
			}
			l, err := parseLabels(labels)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
				if cmd.Flags().Changed("name") {
					return errors.New("conflicting options: cannot specify a volume-name through both --name and as a positional arg")
				}
			} else if n, _ := cmd.Flags().GetString("name"); n != "" {
				name = n
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.VolumeCreate(commandContext(cmd), volume.CreateRequest{Name: name, Driver: driver, DriverOpts: o, Labels: l})
			if err != nil {
				return c.apiError(err)
			}
			fmt.Fprintln(streamsOf(cmd).out, v.Name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&driver, "driver", "d", "local", "Specify volume driver name")
	fl.VarP((*stringArray)(&opts), "opt", "o", "Set driver specific options")
	fl.Var((*stringArray)(&labels), "label", "Set metadata for a volume")
	fl.String("name", "", "Specify volume name")
	_ = fl.MarkHidden("name")
	return cmd
}

// volumeRow is one line of `volume ls`; its methods are the --format fields.
type volumeRow struct{ v volume.Volume }

func (r volumeRow) Name() string       { return r.v.Name }
func (r volumeRow) Driver() string     { return r.v.Driver }
func (r volumeRow) Scope() string      { return r.v.Scope }
func (r volumeRow) Mountpoint() string { return r.v.Mountpoint }
func (r volumeRow) Labels() string {
	var kv []string
	for k, v := range r.v.Labels {
		kv = append(kv, k+"="+v)
	}
	return strings.Join(kv, ",")
}

// Label returns one label's value, as docker's {{.Label "k"}}.
func (r volumeRow) Label(k string) string { return r.v.Labels[k] }
func (r volumeRow) Size() string {
	if r.v.UsageData == nil {
		return "N/A"
	}
	return units.HumanSize(float64(r.v.UsageData.Size))
}

var volumeHeaders = map[string]string{"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
	"Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Label": "LABEL", "Size": "SIZE"}

const defaultVolumeFormat = "{{.Driver}}\t{{.Name}}"

func newVolumeLsCommand() *cobra.Command {
	var quiet bool
	var format string
	var filterArgs []string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.VolumeList(commandContext(cmd), f)
			if err != nil {
				return c.apiError(err)
			}
			switch {
			case quiet:
				format = "{{.Name}}"
			case format == "":
				format = "table"
			}
			rows := make([]any, 0, len(res.Volumes))
			for _, v := range res.Volumes {
				rows = append(rows, volumeRow{v})
			}
			return renderRows(streamsOf(cmd).out, parseTableFormat(format, defaultVolumeFormat), volumeHeaders, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display volume names")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	fl.VarP((*stringArray)(&filterArgs), "filter", "f", "Provide filter values (e.g. \"dangling=true\")")
	return cmd
}

func newVolumeInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd, args, format, "volume")
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

// inspectVolume fetches one volume's inspect document, typed and raw.
func inspectVolume(c *apiClient, cmd *cobra.Command, name string) (any, []byte, error) {
	v, raw, err := c.VolumeInspectWithRaw(commandContext(cmd), name)
	if err != nil {
		return nil, nil, c.apiError(err)
	}
	return v, raw, nil
}

func newVolumeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, name string) error {
				err := c.VolumeRemove(commandContext(cmd), name, force)
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of one or more volumes")
	return cmd
}

func newVolumePruneCommand() *cobra.Command {
	var force, all bool
	var filterArgs []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused local volumes",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			s := streamsOf(cmd)
			warning := "WARNING! This will remove anonymous local volumes not used by at least one container.\n"
			if all {
				warning = "WARNING! This will remove all local volumes not used by at least one container.\n"
			}
			if !force && !confirm(s, warning) {
				return nil
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.VolumePrune(commandContext(cmd), all, f)
			if err != nil {
				return c.apiError(err)
			}
			printDeleted(s.out, "Deleted Volumes:", res.VolumesDeleted)
			fmt.Fprintln(s.out, "Total reclaimed space:", units.HumanSize(float64(res.SpaceReclaimed)))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	fl.BoolVarP(&all, "all", "a", false, "Remove all unused volumes, not just anonymous ones")
	fl.Var((*stringArray)(&filterArgs), "filter", "Provide filter values (e.g. \"label=<label>\")")
	return cmd
}
