package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newSwarmUnlockCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock",
		Short: "Unlock swarm",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := streamsOf(cmd)
			key, err := readUnlockKey(s)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.SwarmUnlock(commandContext(cmd), key); err != nil {
				return c.apiError(err)
			}
			return nil
		},
	}
}

// readUnlockKey prompts for the key on a terminal (without echo), or reads
// all of stdin otherwise, as docker does.
func readUnlockKey(s streams) (string, error) {
	f, ok := s.in.(*os.File)
	var old *unix.Termios
	if ok {
		t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		if err == nil { // not a terminal otherwise
			old = t
		}
	}
	if old == nil {
		b, err := io.ReadAll(s.in)
		if err != nil {
			return "", fmt.Errorf("read unlock key: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	fmt.Fprint(s.out, "Enter unlock key: ")
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &noEcho); err == nil {
		defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, old)
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	fmt.Fprintln(s.out)
	if err != nil && line == "" {
		return "", fmt.Errorf("read unlock key: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func newSwarmUnlockKeyCommand() *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:   "unlock-key [OPTIONS]",
		Short: "Manage the unlock key",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			out := streamsOf(cmd).out
			if rotate {
				if err := rotateSwarm(cmd, c, func(sw swarm.Swarm) error {
					if !sw.Spec.EncryptionConfig.AutoLockManagers {
						return errors.New("cannot rotate because autolock is not turned on")
					}
					return nil
				}, apiclient.SwarmRotate{ManagerUnlockKey: true}); err != nil {
					return err
				}
				if !quiet {
					fmt.Fprint(out, "Successfully rotated manager unlock key.\n\n")
				}
			}
			key, err := c.SwarmGetUnlockKey(ctx)
			if err != nil {
				return c.apiError(err)
			}
			if key == "" {
				return errors.New("no unlock key is set")
			}
			if quiet {
				fmt.Fprintln(out, key)
				return nil
			}
			printUnlockCommand(out, key)
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "Rotate unlock key")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display token")
	return cmd
}

// rotateSwarm writes the swarm's spec back unchanged with the rotations
// asked for, once check (when given) accepts the swarm.
func rotateSwarm(cmd *cobra.Command, c *apiClient, check func(swarm.Swarm) error, rotate apiclient.SwarmRotate) error {
	ctx := commandContext(cmd)
	sw, err := c.SwarmInspect(ctx)
	if err != nil {
		return c.apiError(err)
	}
	if check != nil {
		if err := check(sw); err != nil {
			return err
		}
	}
	if err := c.SwarmUpdate(ctx, sw.Version, sw.Spec, rotate); err != nil {
		return c.apiError(err)
	}
	return nil
}

// printUnlockCommand tells where the unlock key is needed, as docker does.
func printUnlockCommand(out io.Writer, key string) {
	fmt.Fprintf(out, "To unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n"+
		"command and provide the following key:\n\n    %s\n\n"+
		"Remember to store this key in a password manager, since without it you\n"+
		"will not be able to restart the manager.\n", key)
}

// printUnlockKeyIfLocked prints the unlock key after init or update turned
// autolock on.
func printUnlockKeyIfLocked(cmd *cobra.Command, c *apiClient, spec *swarm.Spec) error {
	if !spec.EncryptionConfig.AutoLockManagers {
		return nil
	}
	key, err := c.SwarmGetUnlockKey(commandContext(cmd))
	if err != nil {
		return fmt.Errorf("could not fetch unlock key: %w", c.apiError(err))
	}
	if key == "" {
		return errors.New("no unlock key is set")
	}
	printUnlockCommand(streamsOf(cmd).out, key)
	return nil
}
