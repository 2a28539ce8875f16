// Package ocicli is `shoal runtime`: the OCI runtime command line
// (create, start, state, kill, delete, run, exec) over package runtime, with
// the semantics runc and the runtime-tools validation suite expect. Standard
// streams are handed to the container untouched. Errors are one line on
// stderr and a non-zero exit status.
//
// The binary that mounts this command must dispatch `init` to
// runtime.InitMain (see package runtime).
package ocicli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shimbin"
)

// DefaultRoot is where container state lives unless --root says otherwise.
const DefaultRoot = runtime.DefaultRoot

// ExitError carries a container's exit code out of `run` and `exec`, so
// main can exit with it (cobra would print it otherwise).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Command returns the `runtime` command tree.
func Command() *cobra.Command {
	var root string
	rt := func() *runtime.Runtime { return runtime.New(root) }
	// initRT is rt for the commands that start an init: a Go init runs
	// from the embedded shim binary, whose start costs a tenth of this
	// one's.
	initRT := func() *runtime.Runtime {
		r := rt()
		r.Self = shimbin.Sealed
		return r
	}
	cmd := &cobra.Command{
		Use:           "runtime",
		Short:         "Low-level OCI runtime (create, start, state, kill, delete, run, exec)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.PersistentFlags().StringVar(&root, "root", DefaultRoot, "directory for container state")
	stdio := runtime.CreateOptions{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}

	var bundle, pidFile, consoleSocket string
	var noPivot bool
	create := &cobra.Command{
		Use:   "create [--bundle DIR] [--pid-file FILE] ID",
		Short: "Create a container; its process waits for start",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o := stdio
			o.PidFile, o.NoPivot = pidFile, noPivot
			if consoleSocket != "" {
				// The terminal is allocated in the container, as runc
				// does: its devpts, its /dev/pts/0.
				master, err := initRT().CreateConsole(c.Context(), args[0], bundle, o)
				if err != nil {
					return err
				}
				defer master.Close()
				if err := sendConsole(consoleSocket, args[0], master); err != nil {
					_ = rt().Delete(c.Context(), args[0], true)
					return err
				}
				return nil
			}
			r := initRT()
			return r.Create(c.Context(), args[0], bundle, o)
		},
	}
	create.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle directory")
	create.Flags().StringVar(&pidFile, "pid-file", "", "write the init's pid here")
	create.Flags().StringVar(&consoleSocket, "console-socket", "", "unix socket that receives the pty master (process.terminal)")
	create.Flags().BoolVar(&noPivot, "no-pivot", false, "use MS_MOVE+chroot instead of pivot_root")

	run := &cobra.Command{
		Use:   "run [--bundle DIR] ID",
		Short: "Create and start a container, wait for it, delete it",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if consoleSocket != "" {
				return errors.New("run --console-socket: use create --console-socket and start")
			}
			o := stdio
			o.PidFile, o.NoPivot = pidFile, noPivot
			r := initRT()
			code, err := r.Run(c.Context(), args[0], bundle, o)
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	run.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle directory")
	run.Flags().StringVar(&pidFile, "pid-file", "", "write the init's pid here")
	run.Flags().StringVar(&consoleSocket, "console-socket", "", "not supported with run (use create)")
	run.Flags().BoolVar(&noPivot, "no-pivot", false, "use MS_MOVE+chroot instead of pivot_root")

	start := &cobra.Command{
		Use:   "start ID",
		Short: "Start the process of a created container",
		Args:  cobra.ExactArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return rt().Start(c.Context(), args[0]) },
	}
	state := &cobra.Command{
		Use:   "state ID",
		Short: "Print a container's state as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			st, err := rt().State(args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(c.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		},
	}
	var all bool
	kill := &cobra.Command{
		Use:   "kill [--all] ID [SIGNAL]",
		Short: "Send a signal (default TERM) to a container",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				s, err := ParseSignal(args[1])
				if err != nil {
					return err
				}
				sig = s
			}
			return rt().Kill(args[0], sig, all)
		},
	}
	kill.Flags().BoolVarP(&all, "all", "a", false, "signal every process in the container's cgroup")
	var force bool
	del := &cobra.Command{
		Use:   "delete [--force] ID",
		Short: "Delete a stopped (or, with --force, running) container",
		Args:  cobra.ExactArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return rt().Delete(c.Context(), args[0], force) },
	}
	del.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	var env []string
	var cwd, user string
	execCmd := &cobra.Command{
		Use:   "exec [--env K=V] [--cwd DIR] [--user UID[:GID]] ID CMD [ARG...]",
		Short: "Run a process inside a running container and wait for it",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			r := initRT()
			return execIn(c.Context(), r, args[0], args[1:], env, cwd, user)
		},
	}
	execCmd.Flags().SetInterspersed(false)
	execCmd.Flags().StringArrayVarP(&env, "env", "e", nil, "extra environment")
	execCmd.Flags().StringVar(&cwd, "cwd", "", "working directory (default: the container's)")
	execCmd.Flags().StringVarP(&user, "user", "u", "", "uid[:gid] (default: the container's)")
	cmd.AddCommand(create, run, start, state, kill, del, execCmd)
	return cmd
}

func execIn(ctx context.Context, rt *runtime.Runtime, id string, args, env []string, cwd, user string) error {
	st, err := rt.State(id)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(st.Bundle + "/config.json")
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil || spec.Process == nil {
		return fmt.Errorf("exec: bundle config: %v", err)
	}
	p := *spec.Process
	p.Args = args
	p.Env = append(append([]string(nil), p.Env...), env...)
	if cwd != "" {
		p.Cwd = cwd
	}
	if user != "" {
		u, g, _ := strings.Cut(user, ":")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return fmt.Errorf("exec: --user %q: numeric uid[:gid] expected", user)
		}
		p.User = specs.User{UID: uint32(uid)}
		if g != "" {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return fmt.Errorf("exec: --user %q: numeric uid[:gid] expected", user)
			}
			p.User.GID = uint32(gid)
		}
	}
	proc, err := rt.Exec(ctx, id, p, runtime.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		return err
	}
	ps, err := proc.Wait()
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	code := ps.ExitCode()
	if ws, ok := ps.Sys().(interface{ Signal() os.Signal }); ok && code == -1 {
		if s, ok := ws.Signal().(unix.Signal); ok {
			code = 128 + int(s)
		}
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// ParseSignal accepts TERM, SIGTERM or 15.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal %q", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal %q", s)
}

// Main runs the command with os.Args[2:] (after "shoal runtime") and exits:
// with the container's code for run/exec, 1 after printing any other error.
// main may call it directly; it never returns.
func Main(args []string) {
	cmd := Command()
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var ee *ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ee):
		os.Exit(ee.Code)
	}
	fmt.Fprintln(os.Stderr, "shoal runtime:", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}
