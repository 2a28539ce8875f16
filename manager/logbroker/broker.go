// Package logbroker serves api.LogBroker on the leader: it joins the user's
// `service logs` subscription with the nodes that run the selected tasks.
// Nodes cannot be dialled (workers dial managers), so each node's agent
// keeps a ListenSubscriptions stream open; a subscription is announced on
// the streams of the nodes concerned, and they send their lines back with
// PublishLogs. Without follow, a subscription ends when every announced node
// has closed its publication; with follow, it lasts until the subscriber
// leaves, and nodes that start running selected tasks later are announced
// on the next rescan.
//
// Goroutines: none of its own. State (listeners, subscriptions) is guarded
// by one mutex; each RPC's goroutine ends with its stream.
package logbroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// rescan is how often a following subscription looks for new nodes.
const rescan = time.Second

// Store is what the broker reads: which nodes run which tasks.
type Store interface {
	View(fn func(raftstore.ReadTx))
}

// Broker implements api.LogBrokerServer.
type Broker struct {
	api.UnimplementedLogBrokerServer

	store  Store
	nodeID func(context.Context) (string, error)
	newID  func() string

	mu        sync.Mutex
	listeners map[string]chan *api.LogSubscription // by node ID
	subs      map[string]*subscription
}

type subscription struct {
	msg *api.LogSubscription
	out chan []*api.LogLine
	// pending are the nodes announced that have not closed yet; missing
	// those found without a listener (announced again on the next rescan
	// once they have one); errs the reasons for an incomplete stream.
	// Guarded by Broker.mu.
	pending map[string]bool
	missing map[string]bool
	errs    []string
	// changed is signalled when pending shrinks.
	changed chan struct{}
	done    chan struct{}
}

// New returns a broker over store; nodeID names the calling node of a
// ListenSubscriptions or PublishLogs call (from its certificate).
func New(store Store, nodeID func(context.Context) (string, error)) *Broker {
	return &Broker{store: store, nodeID: nodeID, newID: raftstore.NewID,
		listeners: map[string]chan *api.LogSubscription{}, subs: map[string]*subscription{}}
}

// nodesOf returns the nodes that hold tasks of sel.
func (b *Broker) nodesOf(sel *api.LogSelector) map[string]bool {
	nodes := map[string]bool{}
	b.store.View(func(tx raftstore.ReadTx) {
		add := func(t *api.Task) {
			if t != nil && t.GetNodeId() != "" {
				nodes[t.GetNodeId()] = true
			}
		}
		for _, id := range sel.GetServiceIds() {
			for _, t := range tx.TasksOfService(id) {
				add(t)
			}
		}
		for _, id := range sel.GetTaskIds() {
			add(tx.GetTask(id))
		}
	})
	return nodes
}

// SubscribeLogs implements api.LogBrokerServer.
func (b *Broker) SubscribeLogs(req *api.SubscribeLogsRequest, stream api.LogBroker_SubscribeLogsServer) error {
	sel := req.GetSelector()
	if len(sel.GetServiceIds()) == 0 && len(sel.GetTaskIds()) == 0 {
		return api.ToGRPC(api.Wrap(api.ErrInvalidArgument, errors.New("logs: select at least one service or task")))
	}
	ctx := stream.Context()
	sub := &subscription{
		msg:     &api.LogSubscription{Id: b.newID(), Selector: sel, Options: req.GetOptions()},
		out:     make(chan []*api.LogLine, 64),
		pending: map[string]bool{},
		missing: map[string]bool{},
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	b.mu.Lock()
	b.subs[sub.msg.GetId()] = sub
	b.mu.Unlock()
	defer b.end(sub)
	follow := req.GetOptions().GetFollow()
	b.announce(sub)
	tick := time.NewTicker(rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case lines := <-sub.out:
			if err := stream.Send(&api.SubscribeLogsMessage{Lines: lines}); err != nil {
				return err
			}
			continue
		case <-sub.changed:
		case <-tick.C:
			if follow {
				b.announce(sub)
			}
		}
		if follow {
			continue
		}
		b.mu.Lock()
		left, errs := len(sub.pending), append([]string(nil), sub.errs...)
		b.mu.Unlock()
		if left == 0 {
			// Lines sent before the close are in out already.
			for {
				select {
				case lines := <-sub.out:
					if err := stream.Send(&api.SubscribeLogsMessage{Lines: lines}); err != nil {
						return err
					}
					continue
				default:
				}
				break
			}
			if len(errs) > 0 {
				return api.ToGRPC(api.Wrap(api.ErrUnavailable, fmt.Errorf("incomplete log stream: %s", errs[0])))
			}
			return nil
		}
	}
}

// announce tells the nodes that run selected tasks, and have not been told
// yet, about sub. A node without a listener (down, or not connected) makes
// the stream incomplete.
func (b *Broker) announce(sub *subscription) {
	nodes := b.nodesOf(sub.msg.GetSelector())
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := range nodes {
		if _, seen := sub.pending[n]; seen {
			continue
		}
		l, ok := b.listeners[n]
		if !ok {
			if !sub.missing[n] {
				sub.missing[n] = true
				sub.errs = append(sub.errs, fmt.Sprintf("node %s is not connected", n))
			}
			continue
		}
		select {
		case l <- sub.msg:
			sub.pending[n] = true
		default:
			sub.errs = append(sub.errs, fmt.Sprintf("node %s is not keeping up", n))
		}
	}
	signal(sub.changed)
}

// end removes sub and tells the nodes still sending to stop.
func (b *Broker) end(sub *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, sub.msg.GetId())
	close(sub.done)
	closing := &api.LogSubscription{Id: sub.msg.GetId(), Close: true}
	for n := range sub.pending {
		if l, ok := b.listeners[n]; ok {
			select {
			case l <- closing:
			default:
			}
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ListenSubscriptions implements api.LogBrokerServer.
func (b *Broker) ListenSubscriptions(_ *api.ListenSubscriptionsRequest, stream api.LogBroker_ListenSubscriptionsServer) error {
	node, err := b.nodeID(stream.Context())
	if err != nil {
		return api.ToGRPC(err)
	}
	ch := make(chan *api.LogSubscription, 64)
	b.mu.Lock()
	b.listeners[node] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.listeners[node] == ch {
			delete(b.listeners, node)
		}
		// Subscriptions waiting for this node will not hear from it.
		for _, s := range b.subs {
			if s.pending[node] {
				delete(s.pending, node)
				s.errs = append(s.errs, fmt.Sprintf("node %s went away", node))
				signal(s.changed)
			}
		}
		b.mu.Unlock()
	}()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case m := <-ch:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// PublishLogs implements api.LogBrokerServer.
func (b *Broker) PublishLogs(stream api.LogBroker_PublishLogsServer) error {
	node, err := b.nodeID(stream.Context())
	if err != nil {
		return api.ToGRPC(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil // the node ended the stream; nothing to answer
		}
		b.mu.Lock()
		sub := b.subs[m.GetSubscriptionId()]
		b.mu.Unlock()
		if sub == nil {
			return stream.SendAndClose(&api.PublishLogsResponse{})
		}
		for _, l := range m.GetLines() {
			if l.Context == nil {
				l.Context = &api.LogContext{}
			}
			l.Context.NodeId = node
		}
		if len(m.GetLines()) > 0 {
			select {
			case sub.out <- m.GetLines():
			case <-sub.done:
				return stream.SendAndClose(&api.PublishLogsResponse{})
			case <-stream.Context().Done():
				return nil
			}
		}
		if m.GetClose() {
			b.mu.Lock()
			delete(sub.pending, node)
			if m.GetError() != "" {
				sub.errs = append(sub.errs, m.GetError())
			}
			b.mu.Unlock()
			signal(sub.changed)
			return stream.SendAndClose(&api.PublishLogsResponse{})
		}
	}
}
