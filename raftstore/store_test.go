package raftstore

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func ts(sec int) *timestamppb.Timestamp {
	return timestamppb.New(t0.Add(time.Duration(sec) * time.Second))
}

func svc(id, name string, version uint64) *api.Service {
	return &api.Service{Id: id, Meta: &api.Meta{Version: version, CreatedAt: ts(0), UpdatedAt: ts(0)},
		Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: name},
			Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 2}}}}
}

func task(id, service, node string, state api.TaskState, version uint64) *api.Task {
	return &api.Task{Id: id, ServiceId: service, NodeId: node, Meta: &api.Meta{Version: version, UpdatedAt: ts(1)},
		DesiredState: api.TaskState_RUNNING, Status: &api.TaskStatus{State: state}}
}

func act(kind api.StoreAction_Kind, o Object) *api.StoreAction { return actionFor(kind, o) }

func prop(actions ...*api.StoreAction) *api.Proposal { return &api.Proposal{Actions: actions} }

func batch(ps ...*api.Proposal) *api.ProposalBatch { return &api.ProposalBatch{Proposals: ps} }

const (
	C = api.StoreAction_CREATE
	U = api.StoreAction_UPDATE
	R = api.StoreAction_REMOVE
)

// dump renders the state one object a line, for golden transcripts.
func dump(s *MemoryStore) string {
	var b strings.Builder
	s.View(func(tx ReadTx) {
		fmt.Fprintf(&b, "  index %d\n", tx.Version())
		for k := range numKinds {
			for _, o := range tx.List(k) {
				fmt.Fprintf(&b, "  %s %s v%d", k, o.GetId(), o.GetMeta().GetVersion())
				switch o := o.(type) {
				case *api.Service:
					fmt.Fprintf(&b, " name=%s", o.Spec.GetAnnotations().GetName())
				case *api.Network:
					fmt.Fprintf(&b, " name=%s", o.Spec.GetAnnotations().GetName())
				case *api.Secret:
					fmt.Fprintf(&b, " name=%s", o.Spec.GetAnnotations().GetName())
				case *api.Config:
					fmt.Fprintf(&b, " name=%s", o.Spec.GetAnnotations().GetName())
				case *api.Task:
					fmt.Fprintf(&b, " service=%s node=%s state=%s", o.ServiceId, o.NodeId, o.Status.GetState())
				case *api.Node:
					fmt.Fprintf(&b, " state=%s", o.Status.GetState())
				}
				b.WriteString("\n")
			}
		}
	})
	return b.String()
}

// TestApplyTranscript applies a fixed sequence of raft entries and compares
// results, events and state with testdata/apply.golden (go test -update
// rewrites it; read the diff).
func TestApplyTranscript(t *testing.T) {
	entries := []struct {
		note  string
		batch *api.ProposalBatch
	}{
		{"create a node, a service, a network in one proposal", batch(prop(
			act(C, &api.Node{Id: "n1", Status: &api.NodeStatus{State: api.NodeStatus_READY}}),
			act(C, svc("s1", "web", 0)),
			act(C, &api.Network{Id: "net1", Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"}}})))},
		{"two proposals in one entry: tasks, and a duplicate service name (refused alone)", batch(
			prop(act(C, task("t1", "s1", "n1", api.TaskState_ASSIGNED, 0)), act(C, task("t2", "s1", "", api.TaskState_PENDING, 0))),
			prop(act(C, svc("s2", "web", 0))))},
		{"update at the read version; a stale update in the same entry is refused", batch(
			prop(act(U, task("t1", "s1", "n1", api.TaskState_RUNNING, 2))),
			prop(act(U, task("t2", "s1", "n1", api.TaskState_ASSIGNED, 1))))},
		{"a task cannot go back; a failing action undoes its whole proposal", batch(
			prop(act(U, task("t1", "s1", "n1", api.TaskState_STARTING, 3))),
			prop(act(C, svc("s3", "db", 0)), act(R, &api.Node{Id: "nope"})))},
		{"rename and take over the old name in one proposal; remove at a wrong version", batch(
			prop(act(U, svc("s1", "frontend", 1)), act(C, svc("s4", "web", 0))),
			prop(act(R, &api.Task{Id: "t2", Meta: &api.Meta{Version: 99}})))},
		{"malformed actions", batch(
			prop(&api.StoreAction{Kind: C}),
			prop(&api.StoreAction{Kind: api.StoreAction_UNKNOWN, Target: &api.StoreAction_Task{Task: &api.Task{Id: "t9"}}}),
			prop(act(C, &api.Task{})))},
		{"remove the service's tasks and the network", batch(prop(
			act(R, &api.Task{Id: "t1"}), act(R, &api.Task{Id: "t2"}), act(R, &api.Network{Id: "net1"})))},
	}
	s := NewMemoryStore(nil, nil)
	w := s.Watch()
	defer w.Close()
	var b strings.Builder
	for i, e := range entries {
		index := uint64(i + 1)
		fmt.Fprintf(&b, "entry %d: %s\n", index, e.note)
		for j, err := range s.Apply(index, e.batch) {
			fmt.Fprintf(&b, "  proposal %d: %v\n", j, errText(err))
		}
		select {
		case ev := <-w.C():
			for _, e := range ev.Events {
				fmt.Fprintf(&b, "  event %s %s %s\n", e.Action, e.Kind, idOf(e))
			}
		default:
			b.WriteString("  no events\n")
		}
		b.WriteString(dump(s))
	}
	got := b.String()
	golden := filepath.Join("testdata", "apply.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("transcript differs from %s:\n%s", golden, got)
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	c := api.ClassOf(err)
	if c == nil {
		return "error: " + err.Error()
	}
	return c.Error() + ": " + err.Error()
}

func idOf(e Event) string {
	if e.Object != nil {
		return e.Object.GetId()
	}
	return e.Old.GetId()
}

// TestApplyDeterministic applies the same entries to two stores and
// compares snapshots byte for byte (maps in labels included).
func TestApplyDeterministic(t *testing.T) {
	mk := func() *MemoryStore {
		s := NewMemoryStore(nil, nil)
		for i := 1; i <= 50; i++ {
			sv := svc(fmt.Sprintf("s%02d", i), fmt.Sprintf("svc%d", i), 0)
			sv.Spec.Annotations.Labels = map[string]string{}
			for j := range 20 {
				sv.Spec.Annotations.Labels[fmt.Sprintf("k%d", j)] = "v"
			}
			s.Apply(uint64(i), batch(prop(act(C, sv), act(C, task(fmt.Sprintf("t%02d", i), sv.Id, "n", api.TaskState_NEW, 0)))))
		}
		return s
	}
	a, err := mk().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mk().Snapshot()
	if !bytes.Equal(a, b) {
		t.Fatal("equal histories gave different snapshots")
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := NewMemoryStore(nil, func() time.Time { return t0 })
	ctx := context.Background()
	err := src.Update(ctx, func(tx WriteTx) error {
		for i := range 30 {
			if err := tx.Create(svc(fmt.Sprintf("s%d", i), fmt.Sprintf("web%d", i), 0)); err != nil {
				return err
			}
			if err := tx.Create(task(fmt.Sprintf("t%d", i), fmt.Sprintf("s%d", i%3), "n1", api.TaskState_RUNNING, 0)); err != nil {
				return err
			}
		}
		if err := tx.Create(&api.Secret{Id: "sec", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("x")}}); err != nil {
			return err
		}
		if err := tx.Create(&api.Config{Id: "cfg", Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "conf"}}}); err != nil {
			return err
		}
		if err := tx.Create(&api.Secret{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}}}); !errors.Is(err, api.ErrConflict) {
			return fmt.Errorf("duplicate secret name: %v", err)
		}
		return tx.Create(&api.Cluster{Id: "c", RootCa: &api.RootCA{CaCert: []byte("pem")}})
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dst := NewMemoryStore(nil, nil)
	w := dst.Watch(KindTask)
	if err := dst.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if dump(dst) != dump(src) {
		t.Fatalf("restored state differs:\n%s\nvs\n%s", dump(dst), dump(src))
	}
	again, _ := dst.Snapshot()
	if !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored store differs")
	}
	if _, ok := <-w.C(); ok || !errors.Is(w.Err(), ErrWatchRestored) {
		t.Fatalf("watch after restore: err %v", w.Err())
	}
	// Indexes came back too.
	dst.View(func(tx ReadTx) {
		if n := len(tx.TasksOfService("s1")); n != 10 {
			t.Errorf("TasksOfService after restore = %d", n)
		}
		if tx.GetByName(KindService, "web7") == nil || tx.GetByName(KindSecret, "pw") == nil || tx.GetConfig("cfg") == nil {
			t.Error("name index or secrets/configs lost")
		}
	})
	// A bad snapshot changes nothing.
	before := dump(dst)
	if err := dst.Restore([]byte("garbage")); err == nil {
		t.Fatal("garbage restored")
	}
	dupe := &api.StoreSnapshot{Tasks: []*api.Task{{Id: "x"}, {Id: "x"}}}
	b, _ := proto.Marshal(dupe)
	if err := dst.Restore(b); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate restore: %v", err)
	}
	if dump(dst) != before {
		t.Fatal("failed restore changed the store")
	}
}

func TestUpdateTransaction(t *testing.T) {
	s := NewMemoryStore(nil, func() time.Time { return t0 })
	ctx := context.Background()
	var id string
	err := s.Update(ctx, func(tx WriteTx) error {
		if err := tx.Create(&api.Service{Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}}}); err != nil {
			return err
		}
		got := tx.GetByName(KindService, "web").(*api.Service)
		id = got.Id
		if len(id) != 25 {
			t.Errorf("generated id %q", id)
		}
		got.Spec.Annotations.Labels = map[string]string{"a": "b"}
		if err := tx.Update(got); err != nil { // update of an object created in this tx stays a create
			return err
		}
		if err := tx.Create(&api.Service{Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}}}); !errors.Is(err, api.ErrConflict) {
			t.Errorf("duplicate name in tx: %v", err)
		}
		if err := tx.Create(task("t1", id, "n1", api.TaskState_NEW, 0)); err != nil {
			return err
		}
		if n := len(tx.TasksOfService(id)); n != 1 {
			t.Errorf("tx sees %d own tasks", n)
		}
		if err := tx.Create(&api.Task{Id: "tmp"}); err != nil {
			return err
		}
		return tx.Delete(KindTask, "tmp")
	})
	if err != nil {
		t.Fatal(err)
	}
	var sv *api.Service
	s.View(func(tx ReadTx) {
		sv = tx.GetService(id)
		if tx.GetTask("tmp") != nil || tx.Version() != 1 {
			t.Errorf("tmp task kept or version %d", tx.Version())
		}
	})
	if sv.Meta.Version != 1 || sv.Spec.Annotations.Labels["a"] != "b" || !sv.Meta.CreatedAt.AsTime().Equal(t0) {
		t.Fatalf("stored service: %v", sv)
	}
	sv.Spec.Annotations.Name = "mutated" // a copy: the store is not changed
	stale := proto.Clone(sv).(*api.Service)

	if err := s.Update(ctx, func(tx WriteTx) error {
		sv := tx.GetService(id)
		sv.Spec.Annotations.Name = "frontend"
		return tx.Update(sv)
	}); err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx WriteTx) error {
		stale.Spec.Annotations.Name = "x"
		return tx.Update(stale)
	})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "out of sequence") {
		t.Fatalf("stale update: %v", err)
	}
	err = s.Update(ctx, func(tx WriteTx) error { return tx.Delete(KindNode, "nope") })
	if !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	err = s.Update(ctx, func(tx WriteTx) error { return tx.Create(nil) })
	if !errors.Is(err, api.ErrInvalidArgument) {
		t.Fatalf("create nil: %v", err)
	}
	if got := s.Apply(1, batch(prop())); !errors.Is(got[0], ErrStaleIndex) {
		t.Fatalf("stale index: %v", got)
	}
}

func TestWatch(t *testing.T) {
	s := NewMemoryStore(nil, nil)
	ctx := context.Background()
	var seen int
	tasksOnly := s.ViewAndWatch(2, func(tx ReadTx) { seen = len(tx.Tasks()) }, KindTask)
	all := s.Watch()
	defer all.Close()
	if seen != 0 {
		t.Fatal(seen)
	}
	mustUpdate := func(fn func(WriteTx) error) {
		t.Helper()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate(func(tx WriteTx) error { return tx.Create(svc("s1", "web", 0)) })
	mustUpdate(func(tx WriteTx) error { return tx.Create(task("t1", "s1", "", api.TaskState_NEW, 0)) })
	got := <-tasksOnly.C()
	if got.Version != 2 || len(got.Events) != 1 || got.Events[0].Object.GetId() != "t1" {
		t.Fatalf("task watcher got %+v", got)
	}
	if b := <-all.C(); b.Version != 1 || b.Events[0].Kind != KindService {
		t.Fatalf("all watcher got %+v", b)
	}
	// Fill the 2-batch buffer and one more: Apply must not block, the
	// watcher is ended with ErrWatchOverflow.
	for i := 2; i <= 4; i++ {
		mustUpdate(func(tx WriteTx) error { return tx.Create(task(fmt.Sprintf("t%d", i), "s1", "", api.TaskState_NEW, 0)) })
	}
	n := 0
	for range tasksOnly.C() {
		n++
	}
	if n != 2 || !errors.Is(tasksOnly.Err(), ErrWatchOverflow) {
		t.Fatalf("overflowed watcher: %d batches, err %v", n, tasksOnly.Err())
	}
	tasksOnly.Close() // after the end: harmless
	// Old object in update events.
	mustUpdate(func(tx WriteTx) error {
		t1 := tx.GetTask("t1")
		t1.Status = &api.TaskStatus{State: api.TaskState_PENDING}
		return tx.Update(t1)
	})
	var last Batch
	for len(all.C()) > 0 {
		last = <-all.C()
	}
	e := last.Events[0]
	if e.Action != U || e.Old.(*api.Task).Status.GetState() != api.TaskState_NEW || e.Object.(*api.Task).Status.State != api.TaskState_PENDING {
		t.Fatalf("update event %+v", e)
	}
	all.Close()
	if _, ok := <-all.C(); ok || !errors.Is(all.Err(), ErrWatchClosed) {
		t.Fatal("closed watcher still open")
	}
}

func TestUpdateRefusesHugeProposal(t *testing.T) {
	s := NewMemoryStore(nil, nil)
	big := strings.Repeat("x", MaxProposalBytes/8)
	err := s.Update(context.Background(), func(tx WriteTx) error {
		for i := range 10 {
			sv := svc(fmt.Sprintf("s%d", i), fmt.Sprintf("n%d", i), 0)
			sv.Spec.Annotations.Labels = map[string]string{"big": big}
			if err := tx.Create(sv); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, api.ErrInvalidArgument) || !strings.Contains(err.Error(), "split") {
		t.Fatalf("huge update: %v", err)
	}
	s.View(func(tx ReadTx) {
		if len(tx.Services()) != 0 {
			t.Fatal("part of a refused update was applied")
		}
	})
}

func TestForEachSeesTransaction(t *testing.T) {
	s := NewMemoryStore(nil, nil)
	ctx := context.Background()
	if err := s.Update(ctx, func(tx WriteTx) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := tx.Create(task(id, "s", "n", api.TaskState_NEW, 0)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx WriteTx) error {
		if err := tx.Delete(KindTask, "a"); err != nil {
			return err
		}
		b := tx.GetTask("b")
		b.NodeId = "other"
		if err := tx.Update(b); err != nil {
			return err
		}
		if err := tx.Create(task("d", "s", "n", api.TaskState_NEW, 0)); err != nil {
			return err
		}
		got := map[string]string{}
		tx.ForEach(KindTask, func(o Object) bool { got[o.GetId()] = o.(*api.Task).NodeId; return true })
		if len(got) != 3 || got["b"] != "other" || got["c"] != "n" || got["d"] != "n" {
			t.Errorf("ForEach in tx saw %v", got)
		}
		n := 0
		tx.ForEach(KindTask, func(Object) bool { n++; return false })
		if n != 1 {
			t.Errorf("ForEach did not stop: %d", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	s.View(func(tx ReadTx) { tx.ForEach(KindTask, func(Object) bool { n++; return true }) })
	if n != 3 {
		t.Fatalf("after: %d tasks", n)
	}
}
