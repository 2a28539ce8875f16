package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/system"
	"github.com/spf13/cobra"
)

// system df, system prune and container prune.

// dfRow is one line of `system df`; its methods are the --format fields.
type dfRow struct {
	typ                  string
	total, active        int64
	size, reclaimable    int64
	showReclaimablePerct bool
}

func (r dfRow) Type() string       { return r.typ }
func (r dfRow) TotalCount() string { return fmt.Sprint(r.total) }
func (r dfRow) Active() string     { return fmt.Sprint(r.active) }
func (r dfRow) Size() string       { return units.HumanSize(float64(r.size)) }
func (r dfRow) Reclaimable() string {
	s := units.HumanSize(float64(r.reclaimable))
	if r.showReclaimablePerct && r.size > 0 {
		s += fmt.Sprintf(" (%v%%)", int(float64(r.reclaimable)*100/float64(r.size)))
	}
	return s
}

var dfHeaders = map[string]string{"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}

const defaultDFFormat = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"

func newSystemCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage shoal", Args: noArgs}
	cmd.AddCommand(newDFCommand(), newSystemPruneCommand(), newEventsCommand(), newInfoCommand())
	return cmd
}

func newDFCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "df [OPTIONS]",
		Short: "Show shoal disk usage",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "" {
				format = "table"
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			du, err := c.DiskUsage(commandContext(cmd), system.ContainerObject, system.ImageObject, system.VolumeObject, system.BuildCacheObject)
			if err != nil {
				return c.apiError(err)
			}
			rows := []any{dfRow{typ: "Images", showReclaimablePerct: true}, dfRow{typ: "Containers", showReclaimablePerct: true},
				dfRow{typ: "Local Volumes", showReclaimablePerct: true}, dfRow{typ: "Build Cache"}}
			if u := du.ImageUsage; u != nil {
				rows[0] = dfRow{"Images", u.TotalCount, u.ActiveCount, u.TotalSize, u.Reclaimable, true}
			}
			if u := du.ContainerUsage; u != nil {
				rows[1] = dfRow{"Containers", u.TotalCount, u.ActiveCount, u.TotalSize, u.Reclaimable, true}
			}
			if u := du.VolumeUsage; u != nil {
				rows[2] = dfRow{"Local Volumes", u.TotalCount, u.ActiveCount, u.TotalSize, u.Reclaimable, true}
			}
			if u := du.BuildCacheUsage; u != nil {
				rows[3] = dfRow{"Build Cache", u.TotalCount, u.ActiveCount, u.TotalSize, u.Reclaimable, false}
			}
			return renderRows(streamsOf(cmd).out, parseTableFormat(format, defaultDFFormat), dfHeaders, rows)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

// confirm asks the question on out and reads y/N from in, as docker's prune
// prompts: only "y" or "yes" (any case) agrees.
func confirm(s streams, question string) bool {
	fmt.Fprint(s.out, question+"Are you sure you want to continue? [y/N] ")
	line, _ := bufio.NewReader(s.in).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

func newContainerPruneCommand() *cobra.Command {
	var force bool
	var filterArgs []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			s := streamsOf(cmd)
			if !force && !confirm(s, "WARNING! This will remove all stopped containers.\n") {
				return nil
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.ContainerPrune(commandContext(cmd), f)
			if err != nil {
				return c.apiError(err)
			}
			printDeleted(s.out, "Deleted Containers:", res.ContainersDeleted)
			fmt.Fprintln(s.out, "Total reclaimed space:", units.HumanSize(float64(res.SpaceReclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().Var((*stringArray)(&filterArgs), "filter", "Provide filter values (e.g. \"until=<timestamp>\")")
	return cmd
}

func printDeleted(w io.Writer, title string, ids []string) {
	if len(ids) == 0 {
		return
	}
	fmt.Fprintln(w, title)
	for _, id := range ids {
		fmt.Fprintln(w, id)
	}
	fmt.Fprintln(w)
}

func newSystemPruneCommand() *cobra.Command {
	var force, all, volumes bool
	var filterArgs []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused data",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Refused before anything is removed: nothing half-done.
			switch {
			case all:
				return errors.New("--all is not supported: only dangling images are pruned")
			}
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			s := streamsOf(cmd)
			if !force && !confirm(s, pruneWarning(volumes)) {
				return nil
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			cres, err := c.ContainerPrune(ctx, f)
			if err != nil {
				return c.apiError(err)
			}
			printDeleted(s.out, "Deleted Containers:", cres.ContainersDeleted)
			nres, err := c.NetworkPrune(ctx, f)
			if err != nil {
				return c.apiError(err)
			}
			printDeleted(s.out, "Deleted Networks:", nres.NetworksDeleted)
			var volSpace uint64
			if volumes {
				// As docker: anonymous volumes only (the all filter is not set).
				vres, err := c.VolumePrune(ctx, false, f)
				if err != nil {
					return c.apiError(err)
				}
				printDeleted(s.out, "Deleted Volumes:", vres.VolumesDeleted)
				volSpace = vres.SpaceReclaimed
			}
			imgFilters := f.Clone().Add("dangling", "true")
			ires, err := c.ImagePrune(ctx, imgFilters)
			if err != nil {
				return c.apiError(err)
			}
			var imgs []string
			for _, d := range ires.ImagesDeleted {
				if d.Untagged != "" {
					imgs = append(imgs, "untagged: "+d.Untagged)
				}
				if d.Deleted != "" {
					imgs = append(imgs, "deleted: "+d.Deleted)
				}
			}
			printDeleted(s.out, "Deleted Images:", imgs)
			total := cres.SpaceReclaimed + ires.SpaceReclaimed + volSpace
			fmt.Fprintln(s.out, "Total reclaimed space:", units.HumanSize(float64(total)))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	fl.BoolVarP(&all, "all", "a", false, "Remove all unused images not just dangling ones")
	fl.BoolVar(&volumes, "volumes", false, "Prune anonymous volumes")
	fl.Var((*stringArray)(&filterArgs), "filter", "Provide filter values (e.g. \"label=<key>=<value>\")")
	return cmd
}

// pruneWarning is system prune's question, as docker words it.
func pruneWarning(volumes bool) string {
	w := "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n"
	if volumes {
		w += "  - all anonymous volumes not used by at least one container\n"
	}
	return w + "  - all dangling images\n  - unused build cache\n\n"
}
