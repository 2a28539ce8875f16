package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// runStartError maps a failed start to docker's exit codes: 127 when the
// command does not exist, 126 when it cannot be invoked, else 125.
func runStartError(err error) StatusError {
	msg := err.Error()
	code := 125
	switch {
	case strings.Contains(msg, "executable file not found"),
		strings.Contains(msg, "no such file or directory"),
		strings.Contains(msg, "system cannot find the file specified"):
		code = 127
	case strings.Contains(msg, "permission denied"),
		strings.Contains(msg, "is a directory"):
		code = 126
	}
	return StatusError{Status: msg, Code: code}
}

func newRunCommand() *cobra.Command {
	var o containerOptions
	var detach, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := o.build(cmd.Flags(), args, os.LookupEnv)
			if err != nil {
				return StatusError{Status: err.Error(), Code: 125}
			}
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			if o.tty && o.interactive && !detach && !isTerminal(cmd.InOrStdin()) {
				return errors.New("the input device is not a TTY")
			}
			if o.tty && !detach && req.HostConfig != nil {
				// The console starts at our size, as docker's does.
				req.HostConfig.ConsoleSize = terminalSize(cmd.OutOrStdout())
			}
			if detach {
				req.Config.AttachStdin, req.Config.AttachStdout, req.Config.AttachStderr = false, false, false
				req.Config.StdinOnce = false
			}
			c, err := connect(cmd)
			if err != nil {
				return StatusError{Status: err.Error(), Code: 125}
			}
			defer c.Close()
			id, err := createContainer(cmd, c, req)
			if err != nil {
				return StatusError{Status: err.Error(), Code: 125}
			}
			s := streamsOf(cmd)
			if detach {
				if err := c.ContainerStart(commandContext(cmd), id); err != nil {
					return runStartError(c.apiError(err))
				}
				fmt.Fprintln(s.out, id)
				return nil
			}
			return attachStartWait(cmd, c, id, attachOptions{
				stdin: o.interactive, tty: o.tty, autoRemove: o.autoRemove, sigProxy: sigProxy,
				detachKeys: detachKeys, keys: keys,
			})
		},
	}
	addContainerFlags(cmd.Flags(), &o)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Run container in background and print container ID")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "Proxy received signals to the process")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// attachOptions say how attachStartWait connects the terminal.
type attachOptions struct {
	stdin, tty, autoRemove, sigProxy bool
	// started: the container is already running (start -a of a running
	// container): attach and wait only.
	started bool
	// detachKeys as given (sent to the daemon) and parsed (watched here).
	detachKeys string
	keys       []byte
}

// headerWait bounds how long run waits for the daemon to acknowledge the
// wait request before starting the container. dockerd answers at once
// (headers flushed when the wait is registered); a daemon that holds its
// headers until the exit must not block the start.
const headerWait = 2 * time.Second

// streamDrain bounds how long output may keep arriving after the exit
// status, in case a daemon does not close the attach stream on exit.
const streamDrain = 3 * time.Second

// attachStartWait is docker's foreground run: attach the streams, register
// a wait, start, copy output until the container exits, and return its
// exit code as a StatusError (nil for 0).
func attachStartWait(cmd *cobra.Command, c *apiClient, id string, o attachOptions) error {
	ctx, cancel := context.WithCancel(commandContext(cmd))
	defer cancel()
	s := streamsOf(cmd)

	hj, err := c.ContainerAttach(ctx, id, apiclient.ContainerAttachOptions{
		Stream: true, Stdin: o.stdin, Stdout: true, Stderr: true, DetachKeys: o.detachKeys,
	})
	if err != nil {
		return startFailed(cmd, c, id, o, StatusError{Status: c.apiError(err).Error(), Code: 125})
	}
	defer hj.Close()

	cond := container.WaitConditionNextExit
	if o.autoRemove {
		cond = container.WaitConditionRemoved
	}
	if o.started {
		cond = container.WaitConditionNotRunning
	}
	waitCh, wait := registerWait(ctx, c, id, cond)
	if wait != nil && cond == container.WaitConditionRemoved && len(wait.err) > 0 {
		// A daemon that does not know the "removed" condition refuses it
		// at once; next-exit, registered before start, still sees the exit.
		waitCh, wait = registerWait(ctx, c, id, container.WaitConditionNextExit)
	}

	if !o.started {
		if err := c.ContainerStart(ctx, id); err != nil {
			return startFailed(cmd, c, id, o, runStartError(c.apiError(err)))
		}
	}
	if o.sigProxy && !o.tty {
		stop := proxySignals(ctx, c, id)
		defer stop()
	}
	if o.tty {
		resize := func(h, w uint) {
			_ = c.ContainerResize(ctx, id, h, w)
		}
		if restore := resizeAndRaw(s, o.stdin, resize); restore != nil {
			defer restore()
		}
	}

	// Output: stdcopy frames unless the container has a TTY (raw bytes).
	outDone := make(chan error, 1)
	go func() {
		var err error
		if o.tty {
			_, err = io.Copy(s.out, hj.Reader)
		} else {
			_, err = stdcopy.StdCopy(s.out, s.err, hj.Reader)
		}
		outDone <- err
	}()
	var detached <-chan struct{}
	if o.stdin {
		// The goroutine ends when stdin does, or when hj closes on return.
		detached = copyInput(hj.Conn, hj.CloseWrite, s.in, o.tty, o.keys)
	}

	if wait == nil {
		w := <-waitCh
		wait = &w
	}
	var status container.WaitResponse
	var waitErr error
	streamEnded := false
	select {
	case <-detached:
		// The container runs on; docker prints nothing either.
		return nil
	case <-outDone:
		streamEnded = true
		select {
		case <-detached:
			return nil
		case status = <-wait.result:
		case waitErr = <-wait.err:
		}
	case status = <-wait.result:
	case waitErr = <-wait.err:
	}
	if !streamEnded {
		select {
		case <-outDone:
		case <-time.After(streamDrain):
		}
	}
	if waitErr != nil {
		// The wait failed (an old daemon without the condition, or the
		// container is gone): the state still has the exit code.
		code, err := exitCodeFromInspect(cmd, c, id)
		if err != nil {
			return StatusError{Status: c.apiError(waitErr).Error(), Code: 125}
		}
		status.StatusCode = int64(code)
	}
	if status.Error != nil && status.Error.Message != "" {
		return StatusError{Status: "Error waiting for container: " + status.Error.Message, Code: 125}
	}
	if status.StatusCode != 0 {
		return StatusError{Code: int(status.StatusCode)}
	}
	return nil
}

// waitChans are a wait request's outcomes: the exit status or an error.
type waitChans struct {
	result <-chan container.WaitResponse
	err    <-chan error
}

// registerWait sends the wait request and returns once the daemon has
// acknowledged it (response headers), or after headerWait: then wait is nil
// and the result comes later on the channel.
func registerWait(ctx context.Context, c *apiClient, id string, cond container.WaitCondition) (<-chan waitChans, *waitChans) {
	ch := make(chan waitChans, 1)
	go func() {
		result, err := c.ContainerWait(ctx, id, cond)
		ch <- waitChans{result, err}
	}()
	select {
	case w := <-ch:
		return ch, &w
	case <-time.After(headerWait):
		return ch, nil
	}
}

// startFailed reports a start failure; with --rm the container that never
// ran is removed (dockerd does it too; a second remove is harmless).
func startFailed(cmd *cobra.Command, c *apiClient, id string, o attachOptions, se StatusError) error {
	if o.autoRemove && !o.started {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.ContainerRemove(ctx, id, apiclient.ContainerRemoveOptions{Force: true})
	}
	return se
}

func exitCodeFromInspect(cmd *cobra.Command, c *apiClient, id string) (int, error) {
	ctr, _, err := c.ContainerInspect(commandContext(cmd), id)
	if err != nil {
		return 0, err
	}
	if ctr.State == nil || ctr.State.Running {
		return 0, errors.New("container state unknown")
	}
	return ctr.State.ExitCode, nil
}

// proxySignals forwards the signals a user sends to the CLI to the
// container, as docker run's --sig-proxy does. The returned func stops it.
func proxySignals(ctx context.Context, c *apiClient, id string) func() {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case sig := <-ch:
				n, ok := sig.(syscall.Signal)
				if !ok {
					continue
				}
				_ = c.ContainerKill(ctx, id, fmt.Sprint(int(n)))
			}
		}
	}()
	var stopped bool
	return func() {
		if stopped {
			return
		}
		stopped = true
		signal.Stop(ch)
		close(quit)
		<-done
	}
}
