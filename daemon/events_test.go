package daemon

import (
	"testing"
	"time"

	shoalevents "github.com/shoal-project/shoal/containerd/events"
)

func TestMatchEventFilters(t *testing.T) {
	die := shoalevents.Event{Type: "container", Action: "die", ID: "abcdef123456",
		Attributes: map[string]string{"name": "web", "image": "busybox:latest", "exitCode": "3", "tier": "front"}, Scope: "local"}
	exec := shoalevents.Event{Type: "container", Action: "exec_create: sh -c true", ID: "abcdef123456",
		Attributes: map[string]string{"name": "web", "image": "busybox:latest"}, Scope: "local"}
	tag := shoalevents.Event{Type: "image", Action: "tag", ID: "sha256:1234", Attributes: map[string]string{"name": "mybox:v1"}, Scope: "local"}
	svc := shoalevents.Event{Type: "service", Action: "create", ID: "svc1", Attributes: map[string]string{"name": "api"}, Scope: "swarm"}
	sec := shoalevents.Event{Type: "secret", Action: "create", ID: "sec1", Attributes: map[string]string{"name": "db-pw"}, Scope: "swarm"}
	cfg := shoalevents.Event{Type: "config", Action: "remove", ID: "cfg1", Attributes: map[string]string{"name": "app"}, Scope: "swarm"}
	for _, tc := range []struct {
		filters string
		ev      shoalevents.Event
		want    bool
	}{
		{``, die, true},
		{`{"event":{"die":true}}`, die, true},
		{`{"event":{"start":true,"die":true}}`, die, true}, // values ORed
		{`{"event":{"start":true}}`, die, false},
		{`{"event":{"exec_create":true}}`, exec, true}, // the action before ":"
		{`{"type":{"container":true},"event":{"die":true}}`, die, true},
		{`{"type":{"image":true},"event":{"die":true}}`, die, false}, // keys ANDed
		{`{"container":{"web":true}}`, die, true},
		{`{"container":{"abcdef":true}}`, die, true}, // ID prefix
		{`{"container":{"db":true}}`, die, false},
		{`{"container":{"web":true}}`, tag, false}, // a container filter leaves out images
		{`{"image":{"busybox":true}}`, die, true},
		{`{"image":{"busybox:latest":true}}`, die, true},
		{`{"image":{"alpine":true}}`, die, false},
		{`{"image":{"mybox:v1":true}}`, tag, true},
		{`{"label":{"tier=front":true}}`, die, true},
		{`{"label":{"tier":true}}`, die, true},
		{`{"label":{"tier=back":true}}`, die, false},
		{`{"scope":{"swarm":true}}`, svc, true},
		{`{"scope":{"swarm":true}}`, die, false},
		{`{"service":{"api":true}}`, svc, true},
		{`{"node":{"n1":true}}`, svc, false},
		{`{"secret":{"db-pw":true}}`, sec, true},
		{`{"secret":{"sec":true}}`, sec, true}, // ID prefix
		{`{"secret":{"app":true}}`, cfg, false},
		{`{"config":{"app":true}}`, cfg, true},
		{`{"config":{"db":true}}`, sec, false},
	} {
		f, err := parseFilters(tc.filters, validEventFilters...)
		if err != nil {
			t.Fatalf("%s: %v", tc.filters, err)
		}
		if got := f.matchEvent(tc.ev); got != tc.want {
			t.Errorf("filters %s on %s %s: got %v, want %v", tc.filters, tc.ev.Type, tc.ev.Action, got, tc.want)
		}
	}
	if _, err := parseFilters(`{"bogus":{"x":true}}`, validEventFilters...); err == nil {
		t.Error("an unknown event filter was accepted")
	}
}

func TestEventMessageShape(t *testing.T) {
	b := shoalevents.New(4)
	b.Publish(shoalevents.Event{Type: "container", Action: "start", ID: "c1", Attributes: map[string]string{"image": "busybox"}})
	e := b.Since(time.Time{}, time.Time{})[0]
	m := messageOfEvent(e)
	if m.Status != "start" || m.ID != "c1" || m.From != "busybox" || m.Actor.ID != "c1" || m.Scope != "local" ||
		m.TimeNano != e.Time.UnixNano() || m.Time != e.Time.Unix() {
		t.Fatalf("message %+v", m)
	}
}
