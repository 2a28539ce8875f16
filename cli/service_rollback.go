package cli

import (
	"fmt"
	"strings"

	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newServiceRollbackCommand is docker's `service rollback`: the manager
// swaps the service's spec with its previous one and rolls the tasks back.
func newServiceRollbackCommand() *cobra.Command {
	var wait waitFlags
	cmd := &cobra.Command{
		Use:   "rollback [OPTIONS] SERVICE",
		Short: "Revert changes to a service's configuration",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rollbackService(cmd, args[0], wait)
		},
	}
	addWaitFlags(cmd.Flags(), &wait, true)
	return cmd
}

// rollbackService asks for the rollback of ref and, unless detached, waits
// for the rolled-back service to converge. The spec sent is the current
// one, as docker's: the manager takes the previous spec it keeps.
func rollbackService(cmd *cobra.Command, ref string, wait waitFlags) error {
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := commandContext(cmd)
	svc, raw, err := c.ServiceInspect(ctx, ref, false)
	if err != nil {
		return c.apiError(err)
	}
	up, err := sendServiceUpdate(ctx, c, svc.ID, svc.Version, raw, svc.Spec, apiclient.ServiceUpdateOptions{Rollback: "previous"})
	if err != nil {
		return c.apiError(err)
	}
	s := streamsOf(cmd)
	for _, w := range up.Warnings {
		fmt.Fprintln(s.err, w)
	}
	fmt.Fprintln(s.out, ref)
	if wait.detach {
		return nil
	}
	o := wait.options(cmd)
	o.rollback = true
	o.before, o.name = svc.UpdateStatus, ref
	return c.apiError(waitOnService(ctx, c.Client, svc.ID, s.out, o))
}

// onlyWaitFlags refuses every changed flag of cmd but flag itself and the
// wait flags: `service update --rollback` sends no change of its own, so
// any other flag would be silently dropped. The global flags (-H, ...) are
// not cmd's own and stay allowed.
func onlyWaitFlags(cmd *cobra.Command, flag string) error {
	var others []string
	// LocalFlags is a new set sharing cmd's flags: their Changed fields
	// tell what was given (its own Visit would see nothing).
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		switch {
		case !f.Changed:
		case f.Name == flag, f.Name == "detach", f.Name == "quiet", f.Name == "converge-timeout":
		default:
			others = append(others, "--"+f.Name)
		}
	})
	if len(others) > 0 {
		return fmt.Errorf("other flags may not be combined with --%s: %s", flag, strings.Join(others, ", "))
	}
	return nil
}
