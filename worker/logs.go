package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/logs"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// LogReader is what `service logs` needs of the runtime: a container's log
// records. EngineRuntime has it; a Runtime without it serves no logs.
type LogReader interface {
	Logs(ctx context.Context, id string, opts containers.LogsOptions, fn func(logs.Entry) error) error
}

// logRetry is the wait before listening for subscriptions again.
const logRetry = 500 * time.Millisecond

// serveLogs listens for log subscriptions on the session's manager and
// publishes the lines of this node's matching task containers, until ctx
// (the session) ends.
func (a *Agent) serveLogs(ctx context.Context, lb api.LogBrokerClient) {
	reader, ok := a.cfg.Runtime.(LogReader)
	if !ok {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	active := map[string]context.CancelFunc{}
	for ctx.Err() == nil {
		stream, err := lb.ListenSubscriptions(ctx, &api.ListenSubscriptionsRequest{})
		if err != nil {
			sleep(ctx, logRetry)
			continue
		}
		for {
			sub, err := stream.Recv()
			if err != nil {
				break
			}
			if sub.GetClose() {
				if cancel, ok := active[sub.GetId()]; ok {
					cancel()
					delete(active, sub.GetId())
				}
				continue
			}
			if _, ok := active[sub.GetId()]; ok {
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			active[sub.GetId()] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cancel()
				if err := a.publish(sctx, lb, reader, sub); err != nil && sctx.Err() == nil {
					a.cfg.Logger.Warn("worker: publish logs", "subscription", sub.GetId(), "err", err)
				}
			}()
		}
		sleep(ctx, logRetry)
	}
	for _, cancel := range active {
		cancel()
	}
}

// publish sends the lines of sub's containers on this node, then closes.
func (a *Agent) publish(ctx context.Context, lb api.LogBrokerClient, reader LogReader, sub *api.LogSubscription) error {
	stream, err := lb.PublishLogs(ctx)
	if err != nil {
		return fmt.Errorf("open publication: %w", err)
	}
	lines := make(chan *api.LogLine, 256)
	var readers sync.WaitGroup
	started := map[string]bool{}
	scan := func() error {
		cs, err := a.cfg.Runtime.List(ctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if started[c.ID] || !selects(sub.GetSelector(), c) {
				continue
			}
			started[c.ID] = true
			readers.Add(1)
			go func() {
				defer readers.Done()
				_ = readLines(ctx, reader, c, sub.GetOptions(), lines)
			}()
		}
		return nil
	}
	scanErr := scan()
	// Without follow, the publication ends when every reader has; with
	// follow, only with ctx (allRead stays nil and never fires).
	var allRead chan struct{}
	if !sub.GetOptions().GetFollow() {
		allRead = make(chan struct{})
		go func() {
			readers.Wait()
			close(allRead)
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var batch []*api.LogLine
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := stream.Send(&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Lines: batch})
		batch = nil
		return err
	}
	for {
		select {
		case l := <-lines:
			batch = append(batch, l)
			if len(batch) < 128 && len(lines) > 0 {
				continue
			}
			if err := flush(); err != nil {
				return err
			}
		case <-tick.C:
			if sub.GetOptions().GetFollow() {
				_ = scan()
			}
		case <-allRead:
			// Drain what the readers queued before they ended.
			for len(lines) > 0 {
				batch = append(batch, <-lines)
			}
			if err := flush(); err != nil {
				return err
			}
			msg := &api.PublishLogsMessage{SubscriptionId: sub.GetId(), Close: true}
			if scanErr != nil {
				msg.Error = scanErr.Error()
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			_, err := stream.CloseAndRecv()
			return err
		case <-ctx.Done():
			readers.Wait()
			_ = stream.Send(&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Close: true})
			_, _ = stream.CloseAndRecv()
			return nil
		}
	}
}

func selects(sel *api.LogSelector, c ContainerState) bool {
	return slices.Contains(sel.GetTaskIds(), c.TaskID) || slices.Contains(sel.GetServiceIds(), c.ServiceID)
}

func readLines(ctx context.Context, reader LogReader, c ContainerState, opts *api.LogOptions, out chan<- *api.LogLine) error {
	ro := containers.LogsOptions{Tail: -1, Follow: opts.GetFollow()}
	if opts != nil && opts.GetTail() >= 0 {
		ro.Tail = int(opts.GetTail())
	}
	if opts.GetSince() != nil {
		ro.Since = opts.GetSince().AsTime()
	}
	err := reader.Logs(ctx, c.ID, ro, func(e logs.Entry) error {
		stream := int32(1)
		if e.Stream == "stderr" {
			stream = 2
		}
		l := &api.LogLine{
			Context:   &api.LogContext{ServiceId: c.ServiceID, TaskId: c.TaskID},
			Timestamp: timestamppb.New(e.Time), Stream: stream, Data: []byte(e.Log),
		}
		select {
		case out <- l:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
