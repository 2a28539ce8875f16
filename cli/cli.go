// Package cli is shoal's docker-compatible command line: cobra commands that
// mirror the docker CLI (same names, flags, output columns, --format
// templates) and talk only to a shoal daemon's REST API (the Docker Engine
// API) through its own client of that API, package apiclient.
//
// Where the daemon lives: the root's -H/--host flag (unix://PATH), else the
// SHOAL_HOST environment variable, else unix:///run/shoal/shoal.sock.
//
// Exit codes follow docker's:
//   - 0 on success; run, start -a and exec exit with the code of the
//     container's (or exec'd) process;
//   - 125 when a flag is invalid, and when the daemon refuses run/create
//     (or the start inside run);
//   - 126 when run's start fails because the command cannot be invoked
//     ("permission denied", "is a directory");
//   - 127 when run's start fails because the command is not found
//     ("executable file not found", "no such file or directory");
//   - 1 for every other error (wrong arguments, daemon errors of other
//     commands, no daemon).
//
// Errors are printed by [Execute] as one line on stderr.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// DefaultHost is the daemon address used when neither -H nor SHOAL_HOST is set.
const DefaultHost = "unix:///run/shoal/shoal.sock"

// HostEnv names the environment variable that overrides DefaultHost.
const HostEnv = "SHOAL_HOST"

// Version is the CLI's version, printed by `shoal version`; set with
// -ldflags "-X github.com/shoal-project/shoal/cli.Version=...".
var Version = "dev"

// StatusError carries an exit code out of a command. Status, when not empty,
// is printed on stderr by Execute, on one line; with Lines, each line of it
// is (one error per object of a command given several, as docker prints them).
type StatusError struct {
	Status string
	Code   int
	Lines  bool
}

func (e StatusError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Status
}

// NewRootCommand returns the "shoal" root command with the client command
// that os.Args runs attached, or every one when they name none. Local commands (daemon, runtime, init, shim) are added by the
// caller; they can read the root's persistent --host flag with DaemonHost.
func NewRootCommand() *cobra.Command { return newRootCommand(os.Args[1:]) }

// newRootCommand builds the root with the command that args run, or with
// every command when args name none of them (help, an unknown command, a
// completion request): every CLI call starts here, and building all of
// them, some 200 commands and their flags, costs 1.5-3 ms of its start.
func newRootCommand(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:               "shoal [OPTIONS] COMMAND [ARG...]",
		Short:             "A swarm-style container orchestrator",
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.PersistentFlags().StringP("host", "H", "", "Daemon socket to connect to (unix://PATH; default $"+HostEnv+" or "+DefaultHost+")")
	root.SetFlagErrorFunc(flagError)
	name := commandName(args)
	for _, c := range topLevel {
		if slices.Contains(c.names, name) {
			root.AddCommand(c.build())
			return root
		}
	}
	for _, c := range topLevel {
		root.AddCommand(c.build())
	}
	return root
}

// commandName is the first word of args that is not a root flag or a
// root flag's value.
func commandName(args []string) string {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-H" || a == "--host":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}

// topLevel is the root's commands with the names and aliases they answer
// to (TestTopLevelNames holds the two in step).
var topLevel = []struct {
	names []string
	build func() *cobra.Command
}{
	{[]string{"image"}, newImageCommand},
	{[]string{"container"}, newContainerCommand},
	{[]string{"import"}, newImportCommand},
	{[]string{"images"}, func() *cobra.Command { return newImagesCommand("images") }},
	{[]string{"rmi"}, func() *cobra.Command { return newRmiCommand("rmi") }},
	{[]string{"tag"}, newTagCommand},
	{[]string{"pull"}, newPullCommand},
	{[]string{"push"}, newPushCommand},
	{[]string{"login"}, newLoginCommand},
	{[]string{"logout"}, newLogoutCommand},
	{[]string{"save"}, newSaveCommand},
	{[]string{"load"}, newLoadCommand},
	{[]string{"history"}, newHistoryCommand},
	{[]string{"inspect"}, newInspectCommand},
	{[]string{"run"}, newRunCommand},
	{[]string{"create"}, newCreateCommand},
	{[]string{"start"}, newStartCommand},
	{[]string{"stop"}, newStopCommand},
	{[]string{"restart"}, newRestartCommand},
	{[]string{"kill"}, newKillCommand},
	{[]string{"rm", "remove"}, func() *cobra.Command { return newRmCommand("rm") }},
	{[]string{"ps"}, func() *cobra.Command { return newPsCommand("ps") }},
	{[]string{"logs"}, newLogsCommand},
	{[]string{"exec"}, newExecCommand},
	{[]string{"wait"}, newWaitCommand},
	{[]string{"cp"}, newCpCommand},
	{[]string{"commit"}, newCommitCommand},
	{[]string{"top"}, newTopCommand},
	{[]string{"version"}, newVersionCommand},
	{[]string{"info"}, newInfoCommand},
	{[]string{"attach"}, newAttachCommand},
	{[]string{"build"}, newBuildCommand},
	{[]string{"swarm"}, newSwarmCommand},
	{[]string{"node"}, newNodeCommand},
	{[]string{"service"}, newServiceCommand},
	{[]string{"pause"}, newPauseCommand},
	{[]string{"unpause"}, newUnpauseCommand},
	{[]string{"rename"}, newRenameCommand},
	{[]string{"update"}, newUpdateCommand},
	{[]string{"port"}, newPortCommand},
	{[]string{"diff"}, newDiffCommand},
	{[]string{"export"}, newExportCommand},
	{[]string{"stats"}, newStatsCommand},
	{[]string{"system"}, newSystemCommand},
	{[]string{"events"}, newEventsCommand},
	{[]string{"volume"}, newVolumeCommand},
	{[]string{"network"}, newNetworkCommand},
	{[]string{"secret"}, newSecretCommand},
	{[]string{"config"}, newConfigCommand},
}

func newImageCommand() *cobra.Command {
	c := &cobra.Command{Use: "image", Short: "Manage images", Args: noArgs}
	c.AddCommand(
		newImportCommand(), newImagesCommand("ls"), newRmiCommand("rm"), newTagCommand(),
		newSaveCommand(), newLoadCommand(), newHistoryCommand(), newImageInspectCommand(),
		newPullCommand(), newPushCommand(), newImagePruneCommand(), newBuildCommand(),
	)
	return c
}

func newContainerCommand() *cobra.Command {
	c := &cobra.Command{Use: "container", Short: "Manage containers", Args: noArgs}
	c.AddCommand(
		newRunCommand(), newCreateCommand(), newStartCommand(), newStopCommand(), newRestartCommand(), newKillCommand(),
		newRmCommand("rm"), newPsCommand("ls"), newLogsCommand(), newExecCommand(), newWaitCommand(),
		newCpCommand(), newCommitCommand(), newTopCommand(), newContainerInspectCommand(),
		newAttachCommand(),
	)
	c.AddCommand(observeCommands()...)
	c.AddCommand(newContainerPruneCommand())
	return c
}

// Execute runs root with os.Args and returns the process exit code. Errors
// are printed as one line on root's stderr.
func Execute(root *cobra.Command) int {
	err := root.Execute()
	if err == nil {
		return 0
	}
	code, msg := exitStatus(err)
	if msg != "" {
		fmt.Fprintln(root.ErrOrStderr(), msg)
	}
	return code
}

// exitStatus turns a command's error into an exit code and the one line to print.
func exitStatus(err error) (int, string) {
	var se StatusError
	if errors.As(err, &se) {
		if se.Lines {
			var lines []string
			for _, l := range strings.Split(se.Status, "\n") {
				if l = oneLine(l); l != "" {
					lines = append(lines, l)
				}
			}
			return se.Code, strings.Join(lines, "\n")
		}
		return se.Code, oneLine(se.Status)
	}
	return 1, oneLine(err.Error())
}

// oneLine keeps an error message on one line: daemons and wrapped errors
// sometimes carry newlines, and scripts read stderr line by line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// flagError renders a flag parse error the way docker does, with exit code 125.
func flagError(cmd *cobra.Command, err error) error {
	return StatusError{Status: err.Error(), Code: 125}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%q: unknown command %q", cmd.CommandPath(), args[0])
	}
	return cmd.Help()
}

// DaemonHost resolves the daemon address for cmd: its (inherited) --host
// flag, else $SHOAL_HOST, else DefaultHost.
func DaemonHost(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup("host"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	if h := os.Getenv(HostEnv); h != "" {
		return h
	}
	return DefaultHost
}

// apiClient is a connection to the daemon plus the host it was made for,
// which error messages name.
type apiClient struct {
	*apiclient.Client
	host string
}

// connect makes a client for cmd's daemon. It does not touch the socket:
// the first request does.
func connect(cmd *cobra.Command) (*apiClient, error) {
	host := DaemonHost(cmd)
	if !strings.Contains(host, "://") {
		host = "unix://" + host
	}
	c, err := apiclient.New(host)
	if err != nil {
		return nil, err
	}
	return &apiClient{Client: c, host: host}, nil
}

// apiError rewrites connection failures into shoal's wording, naming the
// shoal daemon; everything else keeps the daemon's "Error response from
// daemon: ..." text.
func (c *apiClient) apiError(err error) error {
	if err == nil {
		return nil
	}
	if apiclient.IsConnectionFailed(err) || isDialError(err) {
		return fmt.Errorf("Cannot connect to the shoal daemon at %s. Is the daemon running?", c.host)
	}
	return err
}

// isDialError catches connection failures the client does not
// classify, such as those of hijacked (attach/exec) connections.
func isDialError(err error) bool {
	s := err.Error()
	if strings.HasPrefix(s, "Error response from daemon:") {
		// The daemon answered; its message may be about a connection of
		// its own (swarm join to a manager that does not listen).
		return false
	}
	return strings.Contains(strings.ToLower(s), "cannot connect to the docker daemon") ||
		strings.Contains(s, "connect: no such file or directory") ||
		strings.Contains(s, "connect: connection refused")
}

// commandContext is the context commands run under: cancelled when cobra's
// context is.
func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// streams bundles a command's standard streams.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

func streamsOf(cmd *cobra.Command) streams {
	return streams{in: cmd.InOrStdin(), out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
}

// exactArgs, minArgs and rangeArgs word argument errors as docker does.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%q requires exactly %d %s. See '%s --help'.", cmd.CommandPath(), n, plural(n, "argument"), cmd.CommandPath())
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("%q requires at least %d %s. See '%s --help'.", cmd.CommandPath(), n, plural(n, "argument"), cmd.CommandPath())
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return fmt.Errorf("%q requires at least %d and at most %d arguments. See '%s --help'.", cmd.CommandPath(), lo, hi, cmd.CommandPath())
		}
		return nil
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
