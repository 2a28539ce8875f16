package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

func newLogsCommand() *cobra.Command {
	var o apiclient.ContainerLogsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			// Inspect first, as docker does: it names a missing container
			// clearly and tells whether the log stream is multiplexed.
			ctr, _, err := c.ContainerInspect(commandContext(cmd), args[0])
			if err != nil {
				return c.apiError(err)
			}
			o.ShowStdout, o.ShowStderr = true, true
			rc, err := c.ContainerLogs(commandContext(cmd), ctr.ID, o)
			if err != nil {
				return c.apiError(err)
			}
			defer rc.Close()
			s := streamsOf(cmd)
			if ctr.Config != nil && ctr.Config.Tty {
				_, err = io.Copy(s.out, rc)
			} else {
				_, err = stdcopy.StdCopy(s.out, s.err, rc)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&o.Follow, "follow", "f", false, "Follow log output")
	fl.BoolVarP(&o.Timestamps, "timestamps", "t", false, "Show timestamps")
	fl.StringVarP(&o.Tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	fl.StringVar(&o.Since, "since", "", "Show logs since timestamp (e.g. \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
	fl.StringVar(&o.Until, "until", "", "Show logs before a timestamp or relative (e.g. \"42m\")")
	fl.BoolVar(&o.Details, "details", false, "Show extra details provided to logs")
	return cmd
}

// logConfig makes run/create's LogConfig from --log-driver and --log-opt
// KEY=VALUE flags; the daemon checks the driver and the options.
func logConfig(driver string, opts []string) (container.LogConfig, error) {
	lc := container.LogConfig{Type: driver}
	for _, kv := range opts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return lc, fmt.Errorf("invalid log opt %q: want KEY=VALUE", kv)
		}
		if lc.Config == nil {
			lc.Config = map[string]string{}
		}
		lc.Config[k] = v
	}
	return lc, nil
}
