package logbroker

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// The tests run the broker behind a real gRPC server on loopback; the node
// identity that mTLS gives in production comes from a "node" header here.
func nodeFromMD(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("node"); len(v) == 1 {
		return v[0], nil
	}
	return "", errors.New("no node")
}

func setup(t *testing.T, tasks ...*api.Task) (api.LogBrokerClient, *Broker) {
	t.Helper()
	st := raftstore.NewMemoryStore(nil, nil)
	err := st.Update(context.Background(), func(tx raftstore.WriteTx) error {
		if err := tx.Create(&api.Service{Id: "svc", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}}}); err != nil {
			return err
		}
		for _, tk := range tasks {
			if err := tx.Create(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	b := New(st, nodeFromMD)
	api.RegisterLogBrokerServer(srv, b)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api.NewLogBrokerClient(conn), b
}

func as(ctx context.Context, node string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "node", node)
}

// fakeNode listens for subscriptions as node and answers each with lines,
// closing unless follow is set; it reports the close messages it gets.
func fakeNode(t *testing.T, c api.LogBrokerClient, node string, lines []string, closed chan<- string) {
	ctx, cancel := context.WithCancel(as(context.Background(), node))
	t.Cleanup(cancel)
	stream, err := c.ListenSubscriptions(ctx, &api.ListenSubscriptionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			sub, err := stream.Recv()
			if err != nil {
				return
			}
			if sub.GetClose() {
				if closed != nil {
					closed <- node + ":" + sub.GetId()
				}
				continue
			}
			pub, err := c.PublishLogs(ctx)
			if err != nil {
				return
			}
			var ll []*api.LogLine
			for _, l := range lines {
				ll = append(ll, &api.LogLine{Context: &api.LogContext{ServiceId: "svc", TaskId: node + "-task"}, Stream: 1, Data: []byte(l)})
			}
			_ = pub.Send(&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Lines: ll, Close: !sub.GetOptions().GetFollow()})
			if !sub.GetOptions().GetFollow() {
				_, _ = pub.CloseAndRecv()
			}
		}
	}()
}

func task(id, node string) *api.Task {
	return &api.Task{Id: id, ServiceId: "svc", NodeId: node}
}

func collect(t *testing.T, s api.LogBroker_SubscribeLogsClient) ([]string, error) {
	t.Helper()
	var got []string
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		for _, l := range m.GetLines() {
			got = append(got, l.GetContext().GetNodeId()+"/"+string(l.GetData()))
		}
	}
}

// waitListeners waits until n nodes' streams have registered.
func waitListeners(t *testing.T, b *Broker, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		got := len(b.listeners)
		b.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d listeners did not register", n)
}

func TestLogsFromEveryNode(t *testing.T) {
	c, b := setup(t, task("t1", "A"), task("t2", "B"))
	fakeNode(t, c, "A", []string{"a1", "a2"}, nil)
	fakeNode(t, c, "B", []string{"b1"}, nil)
	waitListeners(t, b, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.SubscribeLogs(ctx, &api.SubscribeLogsRequest{Selector: &api.LogSelector{ServiceIds: []string{"svc"}}, Options: &api.LogOptions{Tail: -1}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v (got %v)", err, got)
	}
	sort.Strings(got)
	// The node ID is the publisher's identity, not what it claims.
	if want := "A/a1 A/a2 B/b1"; strings.Join(got, " ") != want {
		t.Fatalf("lines %v, want %s", got, want)
	}
}

func TestLogsIncompleteWhenNodeMissing(t *testing.T) {
	c, b := setup(t, task("t1", "A"), task("t2", "gone"))
	fakeNode(t, c, "A", []string{"a1"}, nil)
	waitListeners(t, b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.SubscribeLogs(ctx, &api.SubscribeLogsRequest{Selector: &api.LogSelector{ServiceIds: []string{"svc"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, s)
	if len(got) != 1 || got[0] != "A/a1" {
		t.Fatalf("lines %v, want the connected node's", got)
	}
	if err == nil || !strings.Contains(err.Error(), "node gone is not connected") {
		t.Fatalf("err %v, want the missing node named", err)
	}
}

func TestFollowEndsAtNodesWhenSubscriberLeaves(t *testing.T) {
	c, b := setup(t, task("t1", "A"))
	closed := make(chan string, 4)
	fakeNode(t, c, "A", []string{"a1"}, closed)
	waitListeners(t, b, 1)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.SubscribeLogs(ctx, &api.SubscribeLogsRequest{Selector: &api.LogSelector{TaskIds: []string{"t1"}}, Options: &api.LogOptions{Follow: true}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil || len(m.GetLines()) != 1 {
		t.Fatalf("first message %v, %v", m, err)
	}
	cancel()
	select {
	case c := <-closed:
		if !strings.HasPrefix(c, "A:") {
			t.Fatalf("close went to %s", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node was not told the subscription closed")
	}
}

func TestSubscribeNeedsSelection(t *testing.T) {
	c, _ := setup(t)
	s, err := c.SubscribeLogs(context.Background(), &api.SubscribeLogsRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if !errors.Is(api.FromGRPC(err), api.ErrInvalidArgument) {
		t.Fatalf("err %v, want invalid argument", err)
	}
}
