package cli

import (
	"fmt"
	"runtime"
	"text/tabwriter"

	"github.com/moby/moby/api/types/system"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

func newVersionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [OPTIONS]",
		Short: "Show the shoal version information",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := streamsOf(cmd).out
			type clientInfo struct {
				Version, APIVersion, GoVersion, Os, Arch string
			}
			info := struct {
				Client clientInfo
				Server *system.VersionResponse
			}{Client: clientInfo{Version, apiclient.APIVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH}}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			sv, serr := c.ServerVersion(commandContext(cmd))
			if serr == nil {
				info.Server = &sv
				info.Client.APIVersion = c.Version()
			}
			if format != "" {
				tmpl, err := parseTemplate(format)
				if err != nil {
					return err
				}
				if err := tmpl.Execute(out, info); err != nil {
					return fmt.Errorf("template parsing error: %w", err)
				}
				fmt.Fprintln(out)
				return c.apiError(serr)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)
			fmt.Fprintln(tw, "Client:")
			fmt.Fprintf(tw, " Version:\t%s\n API version:\t%s\n Go version:\t%s\n OS/Arch:\t%s/%s\n",
				info.Client.Version, info.Client.APIVersion, info.Client.GoVersion, info.Client.Os, info.Client.Arch)
			if info.Server != nil {
				fmt.Fprintln(tw, "\nServer:")
				fmt.Fprintln(tw, " Engine:")
				fmt.Fprintf(tw, "  Version:\t%s\n  API version:\t%s (minimum version %s)\n  Go version:\t%s\n  Git commit:\t%s\n  Built:\t%s\n  OS/Arch:\t%s/%s\n",
					sv.Version, sv.APIVersion, sv.MinAPIVersion, sv.GoVersion, sv.GitCommit, sv.BuildTime, sv.Os, sv.Arch)
				for _, comp := range sv.Components {
					if comp.Name != "Engine" { // shown above
						fmt.Fprintf(tw, " %s:\n  Version:\t%s\n", comp.Name, comp.Version)
					}
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return c.apiError(serr)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func newInfoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display system-wide information",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			i, err := c.Info(commandContext(cmd))
			if err != nil {
				return c.apiError(err)
			}
			out := streamsOf(cmd).out
			if format != "" {
				tmpl, err := parseTemplate(format)
				if err != nil {
					return err
				}
				if err := tmpl.Execute(out, i); err != nil {
					return fmt.Errorf("template parsing error: %w", err)
				}
				fmt.Fprintln(out)
				return nil
			}
			fmt.Fprintf(out, "Server:\n Containers: %d\n  Running: %d\n  Paused: %d\n  Stopped: %d\n Images: %d\n",
				i.Containers, i.ContainersRunning, i.ContainersPaused, i.ContainersStopped, i.Images)
			fmt.Fprintf(out, " Server Version: %s\n Storage Driver: %s\n Cgroup Driver: %s\n Cgroup Version: %s\n",
				i.ServerVersion, i.Driver, i.CgroupDriver, i.CgroupVersion)
			fmt.Fprintf(out, " Swarm: %s\n", orDash(string(i.Swarm.LocalNodeState)))
			fmt.Fprintf(out, " Kernel Version: %s\n Operating System: %s\n OSType: %s\n Architecture: %s\n CPUs: %d\n Total Memory: %s\n Name: %s\n ID: %s\n Docker Root Dir: %s\n",
				i.KernelVersion, i.OperatingSystem, i.OSType, i.Architecture, i.NCPU, humanBinarySize(i.MemTotal), i.Name, i.ID, i.DockerRootDir)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "inactive"
	}
	return s
}
