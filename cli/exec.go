package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/spf13/cobra"
)

func newExecCommand() *cobra.Command {
	var interactive, tty, detach, privileged bool
	var env, envFiles []string
	var workdir, user, detachKeys string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			fileEnv, err := readEnvFiles(envFiles)
			if err != nil {
				return err
			}
			flagEnv, err := parseEnvList(env, os.LookupEnv)
			if err != nil {
				return err
			}
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			if tty && interactive && !detach && !isTerminal(cmd.InOrStdin()) {
				return errors.New("the input device is not a TTY")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(commandContext(cmd))
			defer cancel()
			created, err := c.ExecCreate(ctx, args[0], container.ExecCreateRequest{
				User: user, Privileged: privileged, Tty: tty,
				AttachStdin: interactive && !detach, AttachStdout: !detach, AttachStderr: !detach,
				Env: append(fileEnv, flagEnv...), WorkingDir: workdir, Cmd: args[1:], DetachKeys: detachKeys,
				ConsoleSize: execConsoleSize(tty, terminalSize(cmd.OutOrStdout())),
			})
			if err != nil {
				return c.apiError(err)
			}
			if detach {
				err := c.ExecStart(ctx, created.ID, container.ExecStartRequest{Detach: true, Tty: tty})
				return c.apiError(err)
			}
			hj, err := c.ExecAttach(ctx, created.ID, container.ExecStartRequest{Tty: tty})
			if err != nil {
				return c.apiError(err)
			}
			defer hj.Close()
			s := streamsOf(cmd)
			if tty {
				resize := func(h, w uint) {
					_ = c.ExecResize(ctx, created.ID, h, w)
				}
				if restore := resizeAndRaw(s, interactive, resize); restore != nil {
					defer restore()
				}
			}
			detached := make(<-chan struct{})
			if interactive {
				detached = copyInput(hj.Conn, hj.CloseWrite, s.in, tty, keys)
			}
			go func() {
				select {
				case <-detached:
					hj.Close() // ends the copy below; the process runs on
				case <-ctx.Done():
				}
			}()
			if tty {
				_, err = io.Copy(s.out, hj.Reader)
			} else {
				_, err = stdcopy.StdCopy(s.out, s.err, hj.Reader)
			}
			select {
			case <-detached:
				return nil
			default:
			}
			if err != nil {
				return fmt.Errorf("exec %s: %w", created.ID, err)
			}
			code, err := execExitCode(ctx, c, created.ID)
			if err != nil {
				return err
			}
			if code != 0 {
				return StatusError{Code: code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	fl.BoolVarP(&tty, "tty", "t", false, "Allocate a pseudo-TTY")
	fl.BoolVarP(&detach, "detach", "d", false, "Detached mode: run command in the background")
	fl.BoolVar(&privileged, "privileged", false, "Give extended privileges to the command")
	fl.VarP((*stringArray)(&env), "env", "e", "Set environment variables")
	fl.Var((*stringArray)(&envFiles), "env-file", "Read in a file of environment variables")
	fl.StringVarP(&workdir, "workdir", "w", "", "Working directory inside the container")
	fl.StringVarP(&user, "user", "u", "", "Username or UID (format: \"<name|uid>[:<group|gid>]\")")
	fl.StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// execExitCode reads the exit code of a finished exec. The stream closes
// when the process exits, but a daemon may record the code a moment
// later: poll briefly while it still says running.
func execExitCode(ctx context.Context, c *apiClient, id string) (int, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := c.ExecInspect(ctx, id)
		if err != nil {
			return 0, c.apiError(err)
		}
		if !res.Running || time.Now().After(deadline) {
			if res.ExitCode == nil {
				return 0, nil
			}
			return *res.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// execConsoleSize is an exec's initial console size: our terminal's, for
// a TTY only (nil: the daemon's default).
func execConsoleSize(tty bool, s [2]uint) *[2]uint {
	if !tty || s == [2]uint{} {
		return nil
	}
	return &s
}
