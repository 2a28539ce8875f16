package controlapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

var epoch = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// newTestServer is a server over a store without raft (writes apply at once)
// with a fixed clock and predictable IDs.
func newTestServer(t *testing.T) (*Server, *raftstore.MemoryStore) {
	t.Helper()
	clock := func() time.Time { return epoch }
	st := raftstore.NewMemoryStore(nil, clock)
	n := 0
	ids := func() string { n++; return fmt.Sprintf("svc%02dxxxxxxxxxxxxxxxxxxxxx", n) }
	return NewServer(st, clock, ids), st
}

func seed(t *testing.T, st *raftstore.MemoryStore, objs ...raftstore.Object) {
	t.Helper()
	err := st.Update(context.Background(), func(tx raftstore.WriteTx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func replicated(name, image string, n uint64) *api.ServiceSpec {
	return &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name, Labels: map[string]string{"app": name}},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: image}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: n}},
	}
}

// wantErr checks err's class and that its message says what went wrong.
func wantErr(t *testing.T, err error, class error, text string) {
	t.Helper()
	if class == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error; want %v containing %q", class, text)
	}
	if !errors.Is(err, class) {
		t.Fatalf("error %q is not %v", err, class)
	}
	if !strings.Contains(err.Error(), text) {
		t.Fatalf("error %q does not mention %q", err, text)
	}
}

func TestCreateServiceValidation(t *testing.T) {
	edit := func(f func(*api.ServiceSpec)) *api.ServiceSpec {
		s := replicated("web", "busybox", 2)
		f(s)
		return s
	}
	neg := durationpb.New(-time.Second)
	tests := []struct {
		name  string
		spec  *api.ServiceSpec
		class error
		text  string
	}{
		{"ok", replicated("web", "busybox", 2), nil, ""},
		{"zero replicas ok", replicated("web", "busybox", 0), nil, ""},
		{"global ok", edit(func(s *api.ServiceSpec) { s.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}} }), nil, ""},
		{"no spec", nil, api.ErrInvalidArgument, "spec is required"},
		{"no name", replicated("", "busybox", 1), api.ErrInvalidArgument, "service name is required"},
		{"bad name", replicated("web site", "busybox", 1), api.ErrInvalidArgument, `name "web site" is invalid`},
		{"long name", replicated(strings.Repeat("a", 64), "busybox", 1), api.ErrInvalidArgument, "longer than 63"},
		{"no image", replicated("web", "", 1), api.ErrInvalidArgument, "service web: image is required"},
		{"no task", edit(func(s *api.ServiceSpec) { s.Task = nil }), api.ErrInvalidArgument, "image is required"},
		{"no mode", edit(func(s *api.ServiceSpec) { s.Mode = nil }), api.ErrInvalidArgument, "mode is required"},
		{"bad constraint", edit(func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Constraints: []string{"node.colour==red"}}
		}), api.ErrInvalidArgument, `unknown key "node.colour"`},
		{"constraint without operator", edit(func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Constraints: []string{"node.role"}}
		}), api.ErrInvalidArgument, "expected key==value"},
		{"bad preference", edit(func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Preferences: []*api.PlacementPreference{{Preference: &api.PlacementPreference_Spread{Spread: &api.SpreadOver{SpreadDescriptor: "az"}}}}}
		}), api.ErrInvalidArgument, "node.labels.<name>"},
		{"restart condition", edit(func(s *api.ServiceSpec) {
			s.Task.Restart = &api.RestartPolicy{Condition: 7}
		}), api.ErrInvalidArgument, "unknown restart condition 7"},
		{"restart delay", edit(func(s *api.ServiceSpec) {
			s.Task.Restart = &api.RestartPolicy{Delay: neg}
		}), api.ErrInvalidArgument, "restart delay must not be negative"},
		{"restart window", edit(func(s *api.ServiceSpec) {
			s.Task.Restart = &api.RestartPolicy{Window: neg}
		}), api.ErrInvalidArgument, "restart window must not be negative"},
		{"negative cpu", edit(func(s *api.ServiceSpec) {
			s.Task.Resources = &api.ResourceRequirements{Limits: &api.Resources{NanoCpus: -1}}
		}), api.ErrInvalidArgument, "CPU limit must not be negative"},
		{"negative memory", edit(func(s *api.ServiceSpec) {
			s.Task.Resources = &api.ResourceRequirements{Reservations: &api.Resources{MemoryBytes: -5}}
		}), api.ErrInvalidArgument, "memory reservation must not be negative"},
		{"stop grace", edit(func(s *api.ServiceSpec) { s.Task.Container.StopGracePeriod = neg }), api.ErrInvalidArgument, "stop grace period"},
		{"mount target", edit(func(s *api.ServiceSpec) {
			s.Task.Container.Mounts = []*api.Mount{{Type: api.Mount_BIND, Source: "/srv"}}
		}), api.ErrInvalidArgument, "has no target"},
		{"update ratio", edit(func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{MaxFailureRatio: 1.5} }), api.ErrInvalidArgument, "max failure ratio"},
		{"rollback delay", edit(func(s *api.ServiceSpec) { s.Rollback = &api.UpdateConfig{Delay: neg} }), api.ErrInvalidArgument, "rollback config delay"},
		// Every update setting Docker has is applied (manager/orchestrator,
		// update.go), so all are accepted; a rollback that would roll itself
		// back is refused.
		{"update settings ok", edit(func(s *api.ServiceSpec) {
			s.Update = &api.UpdateConfig{Parallelism: 2, Delay: durationpb.New(10 * time.Second), Monitor: durationpb.New(5 * time.Second),
				FailureAction: api.UpdateConfig_ROLLBACK, MaxFailureRatio: 0.5, Order: api.UpdateConfig_START_FIRST}
			s.Rollback = &api.UpdateConfig{Parallelism: 1, Monitor: durationpb.New(5 * time.Second), FailureAction: api.UpdateConfig_CONTINUE}
		}), nil, ""},
		{"rollback of a rollback", edit(func(s *api.ServiceSpec) { s.Rollback = &api.UpdateConfig{FailureAction: api.UpdateConfig_ROLLBACK} }),
			api.ErrInvalidArgument, "rollback config failure action rollback is not supported"},
		{"target port", edit(func(s *api.ServiceSpec) {
			s.Endpoint = &api.EndpointSpec{Ports: []*api.PortConfig{{PublishedPort: 80}}}
		}), api.ErrInvalidArgument, "target port 0"},
		{"published twice", edit(func(s *api.ServiceSpec) {
			s.Endpoint = &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}, {TargetPort: 81, PublishedPort: 8080}}}
		}), api.ErrInvalidArgument, "published twice"},
		{"dnsrr ingress", edit(func(s *api.ServiceSpec) {
			s.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR, Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
		}), api.ErrInvalidArgument, "dnsrr"},
		{"unknown network", edit(func(s *api.ServiceSpec) {
			s.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "nope"}}
		}), api.ErrInvalidArgument, "network nope not found"},
		{"secret uid", edit(func(s *api.ServiceSpec) {
			s.Task.Container.Secrets = []*api.SecretReference{{SecretName: "pw", File: &api.FileTarget{Name: "pw", Uid: "www"}}}
		}), api.ErrInvalidArgument, `secret pw: uid "www" must be a number`},
		{"config mode", edit(func(s *api.ServiceSpec) {
			s.Task.Container.Configs = []*api.ConfigReference{{ConfigName: "c", File: &api.FileTarget{Name: "c", Mode: 0o4755}}}
		}), api.ErrInvalidArgument, "config c: mode 04755 has bits other than permissions"},
		{"same target twice", edit(func(s *api.ServiceSpec) {
			s.Task.Container.Secrets = []*api.SecretReference{{SecretName: "a", File: &api.FileTarget{Name: "x"}},
				{SecretName: "b", File: &api.FileTarget{Name: "/run/secrets/x"}}}
		}), api.ErrInvalidArgument, "secret b and secret a both target /run/secrets/x"},
		{"unknown secret", edit(func(s *api.ServiceSpec) {
			s.Task.Container.Secrets = []*api.SecretReference{{SecretName: "pw"}}
		}), api.ErrInvalidArgument, "secret pw not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st := newTestServer(t)
			resp, err := s.createService(context.Background(), &api.CreateServiceRequest{Spec: tt.spec})
			wantErr(t, err, tt.class, tt.text)
			var n int
			st.View(func(tx raftstore.ReadTx) { n = len(tx.Services()) })
			if err != nil {
				if n != 0 {
					t.Fatalf("refused create left %d services", n)
				}
				return
			}
			if n != 1 || resp.Service.SpecVersion != 1 || resp.Service.Meta.GetVersion() == 0 {
				t.Fatalf("created %d services, got %v", n, resp.Service)
			}
		})
	}
}

func TestCreateServiceResolvesReferences(t *testing.T) {
	s, st := newTestServer(t)
	seed(t, st,
		&api.Network{Id: "net1", Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"}}},
		&api.Secret{Id: "sec1", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("x")}},
		&api.Config{Id: "cfg1", Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "conf"}}},
	)
	spec := replicated("web", "busybox", 1)
	spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "app"}}
	spec.Task.Container.Secrets = []*api.SecretReference{{SecretName: "pw"}}
	spec.Task.Container.Configs = []*api.ConfigReference{{ConfigId: "cfg1"}}
	resp, err := s.createService(context.Background(), &api.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	task := resp.Service.Spec.Task
	if task.Networks[0].Target != "net1" || task.Container.Secrets[0].SecretId != "sec1" || task.Container.Configs[0].ConfigName != "conf" {
		t.Fatalf("references not resolved: %v", task)
	}
	if spec.Task.Networks[0].Target != "app" {
		t.Fatal("the caller's spec was modified")
	}
}

func TestServiceNamesAndLookups(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := context.Background()
	for _, name := range []string{"web", "db"} {
		if _, err := s.createService(ctx, &api.CreateServiceRequest{Spec: replicated(name, "busybox", 1)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.createService(ctx, &api.CreateServiceRequest{Spec: replicated("web", "nginx", 1)})
	wantErr(t, err, api.ErrConflict, "service web already exists")

	// IDs are svc01xxx... and svc02xxx...
	tests := []struct {
		ref    string
		wantID string
		class  error
		text   string
	}{
		{"svc01xxxxxxxxxxxxxxxxxxxxx", "svc01xxxxxxxxxxxxxxxxxxxxx", nil, ""},
		{"web", "svc01xxxxxxxxxxxxxxxxxxxxx", nil, ""},
		{"db", "svc02xxxxxxxxxxxxxxxxxxxxx", nil, ""},
		{"svc02", "svc02xxxxxxxxxxxxxxxxxxxxx", nil, ""},
		{"svc0", "", api.ErrInvalidArgument, "service svc0 is ambiguous (2 matches)"},
		{"cache", "", api.ErrNotFound, "service cache not found"},
		{"", "", api.ErrInvalidArgument, "service ID or name is required"},
	}
	for _, tt := range tests {
		resp, err := s.getService(&api.GetServiceRequest{ServiceId: tt.ref})
		wantErr(t, err, tt.class, tt.text)
		if err == nil && resp.Service.Id != tt.wantID {
			t.Errorf("GetService(%q) = %s, want %s", tt.ref, resp.Service.Id, tt.wantID)
		}
	}

	list := func(f *api.ListServicesRequest_Filters) []string {
		resp, err := s.ListServices(ctx, &api.ListServicesRequest{Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, svc := range resp.Services {
			names = append(names, svc.Spec.Annotations.Name)
		}
		return names
	}
	for _, tt := range []struct {
		f    *api.ListServicesRequest_Filters
		want string
	}{
		{nil, "web,db"},
		{&api.ListServicesRequest_Filters{Names: []string{"db"}}, "db"},
		{&api.ListServicesRequest_Filters{IdPrefixes: []string{"svc01"}}, "web"},
		{&api.ListServicesRequest_Filters{Labels: map[string]string{"app": "db"}}, "db"},
		{&api.ListServicesRequest_Filters{Labels: map[string]string{"app": ""}}, "web,db"},
		{&api.ListServicesRequest_Filters{Labels: map[string]string{"tier": ""}}, ""},
	} {
		if got := strings.Join(list(tt.f), ","); got != tt.want {
			t.Errorf("ListServices(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}

	if _, err := s.removeService(ctx, &api.RemoveServiceRequest{ServiceId: "web"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.removeService(ctx, &api.RemoveServiceRequest{ServiceId: "web"})
	wantErr(t, err, api.ErrNotFound, "service web not found")
	// The name is free again.
	if _, err := s.createService(ctx, &api.CreateServiceRequest{Spec: replicated("web", "busybox", 1)}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateService(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestServer(t)
	created, err := s.createService(ctx, &api.CreateServiceRequest{Spec: replicated("web", "busybox", 1)})
	if err != nil {
		t.Fatal(err)
	}
	svc := created.Service
	update := func(version uint64, spec *api.ServiceSpec, rollback bool) (*api.Service, error) {
		resp, err := s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: version, Spec: spec, Rollback: rollback})
		if err != nil {
			return nil, err
		}
		return resp.Service, nil
	}

	_, err = update(svc.Meta.Version, nil, true)
	wantErr(t, err, api.ErrFailedPrecondition, "no previous spec")

	scaled := replicated("web", "busybox", 3)
	v2, err := update(svc.Meta.Version, scaled, false)
	if err != nil {
		t.Fatal(err)
	}
	if v2.SpecVersion != 2 || v2.PreviousSpecVersion != 1 || v2.Spec.GetReplicated().Replicas != 3 || v2.PreviousSpec.GetReplicated().Replicas != 1 {
		t.Fatalf("after update: %v", v2)
	}

	// The first reader's version is stale now.
	_, err = update(svc.Meta.Version, replicated("web", "nginx", 3), false)
	wantErr(t, err, api.ErrConflict, "update out of sequence")

	global := replicated("web", "busybox", 0)
	global.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	for _, tt := range []struct {
		spec  *api.ServiceSpec
		class error
		text  string
	}{
		{global, api.ErrInvalidArgument, "mode cannot change"},
		{replicated("api", "busybox", 1), api.ErrInvalidArgument, "renaming services is not supported"},
		{replicated("web", "", 1), api.ErrInvalidArgument, "image is required"},
		{nil, api.ErrInvalidArgument, "spec is required"},
	} {
		_, err := update(v2.Meta.Version, tt.spec, false)
		wantErr(t, err, tt.class, tt.text)
	}
	_, err = s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: "nope", ServiceVersion: 1, Spec: scaled})
	wantErr(t, err, api.ErrNotFound, "service nope not found")

	back, err := update(v2.Meta.Version, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if back.SpecVersion != 3 || back.Spec.GetReplicated().Replicas != 1 || back.PreviousSpec.GetReplicated().Replicas != 3 ||
		back.UpdateStatus.GetState() != api.UpdateStatus_ROLLBACK_STARTED || !back.UpdateStatus.StartedAt.AsTime().Equal(epoch) {
		t.Fatalf("after rollback: %v", back)
	}

	// The same spec again: written all the same, as swarmkit's (a new
	// version, the spec its own previous one, the update status reset).
	same, err := update(back.Meta.Version, back.Spec, false)
	if err != nil {
		t.Fatal(err)
	}
	if same.Meta.Version <= back.Meta.Version || same.SpecVersion != back.SpecVersion+1 || !proto.Equal(same.PreviousSpec, same.Spec) ||
		!proto.Equal(same.Spec, back.Spec) || same.UpdateStatus != nil {
		t.Fatalf("no-op update: %v", same)
	}
}

func TestTasks(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	task := func(id, svc, node string, slot uint64, desired api.TaskState) *api.Task {
		return &api.Task{Id: id, ServiceId: svc, NodeId: node, Slot: slot, DesiredState: desired,
			Annotations: &api.Annotations{Name: fmt.Sprintf("%s.%d", svc, slot)}, Status: &api.TaskStatus{}}
	}
	seed(t, st,
		task("t1", "web", "n1", 1, api.TaskState_RUNNING),
		task("t2", "web", "n2", 2, api.TaskState_RUNNING),
		task("t3", "web", "n1", 1, api.TaskState_SHUTDOWN),
		task("t4", "db", "n2", 1, api.TaskState_RUNNING),
	)
	ids := func(f *api.ListTasksRequest_Filters) string {
		resp, err := s.ListTasks(ctx, &api.ListTasksRequest{Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, t := range resp.Tasks {
			out = append(out, t.Id)
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		f    *api.ListTasksRequest_Filters
		want string
	}{
		{nil, "t1,t2,t3,t4"},
		{&api.ListTasksRequest_Filters{ServiceIds: []string{"web"}}, "t1,t2,t3"},
		{&api.ListTasksRequest_Filters{ServiceIds: []string{"db", "web", "db"}}, "t1,t2,t3,t4"},
		{&api.ListTasksRequest_Filters{NodeIds: []string{"n2"}}, "t2,t4"},
		{&api.ListTasksRequest_Filters{ServiceIds: []string{"web"}, NodeIds: []string{"n1"}}, "t1,t3"},
		{&api.ListTasksRequest_Filters{DesiredStates: []api.TaskState{api.TaskState_RUNNING}}, "t1,t2,t4"},
		{&api.ListTasksRequest_Filters{ServiceIds: []string{"web"}, Slots: []uint64{1}, DesiredStates: []api.TaskState{api.TaskState_RUNNING}}, "t1"},
		{&api.ListTasksRequest_Filters{Names: []string{"db.1"}}, "t4"},
		{&api.ListTasksRequest_Filters{IdPrefixes: []string{"t2", "t3"}}, "t2,t3"},
	} {
		if got := ids(tt.f); got != tt.want {
			t.Errorf("ListTasks(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
	if resp, err := s.GetTask(ctx, &api.GetTaskRequest{TaskId: "t4"}); err != nil || resp.Task.ServiceId != "db" {
		t.Fatalf("GetTask t4 = %v, %v", resp, err)
	}
	_, err := s.GetTask(ctx, &api.GetTaskRequest{TaskId: "t"})
	wantErr(t, api.FromGRPC(err), api.ErrInvalidArgument, "ambiguous")
	if _, err := s.RemoveTask(ctx, &api.RemoveTaskRequest{TaskId: "t3"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetTask(ctx, &api.GetTaskRequest{TaskId: "t3"})
	wantErr(t, api.FromGRPC(err), api.ErrNotFound, "task t3 not found")
}

func TestProtoNotShared(t *testing.T) {
	// A response must be the caller's: changing it must not change the store.
	s, _ := newTestServer(t)
	resp, err := s.createService(context.Background(), &api.CreateServiceRequest{Spec: replicated("web", "busybox", 1)})
	if err != nil {
		t.Fatal(err)
	}
	resp.Service.Spec.Task.Container.Image = "changed"
	again, err := s.getService(&api.GetServiceRequest{ServiceId: "web"})
	if err != nil || proto.Equal(again.Service, resp.Service) {
		t.Fatalf("store shares its object with the response: %v %v", again, err)
	}
}

func durationpbOf(seconds int64) *durationpb.Duration { return &durationpb.Duration{Seconds: seconds} }

// TestRollbackAndResume: the orchestrator's rollback (failure action
// rollback) goes through Server.Rollback, which refuses a service changed
// since the decision; `service update` with no change resumes a paused
// update and, paused or not, is written with a new version, as swarmkit's.
func TestRollbackAndResume(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	created, err := s.createService(ctx, &api.CreateServiceRequest{Spec: replicated("web", "busybox", 2)})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Service.Id
	wantErr(t, s.Rollback(ctx, id, created.Service.Meta.Version, "x"), api.ErrFailedPrecondition, "no previous spec")
	up, err := s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: id, ServiceVersion: created.Service.Meta.Version,
		Spec: replicated("web", "busybox:2", 2)})
	if err != nil {
		t.Fatal(err)
	}
	v := up.Service.Meta.Version
	wantErr(t, s.Rollback(ctx, id, v-1, "x"), api.ErrConflict, "changed since its rollback was decided")
	wantErr(t, s.Rollback(ctx, "nope", v, "x"), api.ErrNotFound, "service nope not found")
	const msg = "update rolled back due to failure or early termination of task t1"
	if err := s.Rollback(ctx, id, v, msg); err != nil {
		t.Fatal(err)
	}
	var svc *api.Service
	st.View(func(tx raftstore.ReadTx) { svc = tx.GetService(id) })
	if svc.Spec.Task.Container.Image != "busybox" || svc.PreviousSpec.Task.Container.Image != "busybox:2" ||
		svc.UpdateStatus.GetState() != api.UpdateStatus_ROLLBACK_STARTED || svc.UpdateStatus.GetMessage() != msg {
		t.Fatalf("after Rollback: spec %s, previous %s, status %v", svc.Spec.Task.Container.Image,
			svc.PreviousSpec.Task.Container.Image, svc.UpdateStatus)
	}

	for _, paused := range []api.UpdateStatus_State{api.UpdateStatus_PAUSED, api.UpdateStatus_ROLLBACK_PAUSED} {
		err := st.Update(ctx, func(tx raftstore.WriteTx) error {
			x := tx.GetService(id)
			x.UpdateStatus = &api.UpdateStatus{State: paused, Message: "update paused due to failure"}
			return tx.Update(x)
		})
		if err != nil {
			t.Fatal(err)
		}
		st.View(func(tx raftstore.ReadTx) { svc = tx.GetService(id) })
		res, err := s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: id, ServiceVersion: svc.Meta.Version, Spec: svc.Spec})
		if err != nil {
			t.Fatal(err)
		}
		if res.Service.UpdateStatus != nil || res.Service.Meta.Version <= svc.Meta.Version || !proto.Equal(res.Service.PreviousSpec, svc.Spec) {
			t.Fatalf("no-op update of a %s service: status %v, version %d -> %d, previous spec %v", paused, res.Service.UpdateStatus,
				svc.Meta.Version, res.Service.Meta.Version, res.Service.PreviousSpec)
		}
	}
	// Not paused, a no-op update is written too, as swarmkit's: a new
	// version, the spec as the previous one.
	st.View(func(tx raftstore.ReadTx) { svc = tx.GetService(id) })
	res, err := s.updateService(ctx, &api.UpdateServiceRequest{ServiceId: id, ServiceVersion: svc.Meta.Version, Spec: svc.Spec})
	if err != nil {
		t.Fatal(err)
	}
	if res.Service.Meta.Version <= svc.Meta.Version || !proto.Equal(res.Service.PreviousSpec, svc.Spec) || !proto.Equal(res.Service.Spec, svc.Spec) {
		t.Fatalf("no-op update: version %d -> %d, spec %v, previous %v", svc.Meta.Version, res.Service.Meta.Version, res.Service.Spec, res.Service.PreviousSpec)
	}
}
