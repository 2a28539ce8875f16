package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/shoal-project/shoal/containerd/containers"
	shoalevents "github.com/shoal-project/shoal/containerd/events"
)

// GET /events: the node's event bus (containerd/events) as the Engine API
// streams it. Containers' events come from the engine; images', networks'
// and, on a manager, nodes', services', secrets' and configs' from the
// daemon's own handlers (so one changed through another manager shows on
// that manager's stream only).

// validEventFilters are the keys /events accepts, as dockerd.
var validEventFilters = []string{"config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"}

// eventMessage is events.Message plus the fields API < 1.22 clients (and
// docker-py's helpers) still read: status, id and from.
type eventMessage struct {
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
	events.Message
}

func messageOfEvent(e shoalevents.Event) eventMessage {
	attrs := e.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	m := eventMessage{Message: events.Message{
		Type: events.Type(e.Type), Action: events.Action(e.Action),
		Actor: events.Actor{ID: e.ID, Attributes: attrs}, Scope: e.Scope,
		Time: e.Time.Unix(), TimeNano: e.Time.UnixNano(),
	}}
	if e.Type == shoalevents.TypeContainer {
		m.Status, m.ID, m.From = e.Action, e.ID, attrs["image"]
	}
	return m
}

// matchEvent applies dockerd's event filters: keys are ANDed, the values of
// one key ORed; names and IDs match by prefix.
func (f filters) matchEvent(e shoalevents.Event) bool {
	action, _, _ := strings.Cut(e.Action, ":") // "exec_create: sh" matches event=exec_create
	prefixOf := func(typ string) func(string) bool {
		return func(v string) bool {
			return e.Type == typ && (strings.HasPrefix(e.ID, v) || strings.HasPrefix(e.Attributes["name"], v))
		}
	}
	image := func(v string) bool {
		ref := e.ID
		if e.Type != shoalevents.TypeImage {
			ref = e.Attributes["image"]
		}
		name := ref
		if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
			name = ref[:i]
		}
		return ref == v || name == v || e.Attributes["name"] == v
	}
	return f.any("event", func(v string) bool { return v == e.Action || v == action }) &&
		f.any("type", func(v string) bool { return v == e.Type }) &&
		f.any("scope", func(v string) bool { return v == e.Scope }) &&
		f.any("container", prefixOf(shoalevents.TypeContainer)) &&
		f.any("image", image) &&
		f.any("network", prefixOf(shoalevents.TypeNetwork)) &&
		f.any("volume", prefixOf(shoalevents.TypeVolume)) &&
		f.any("node", prefixOf(shoalevents.TypeNode)) &&
		f.any("service", prefixOf(shoalevents.TypeService)) &&
		f.any("daemon", prefixOf(shoalevents.TypeDaemon)) &&
		f.any("plugin", func(string) bool { return false }) &&
		f.any("secret", prefixOf(string(events.SecretEventType))) &&
		f.any("config", prefixOf(string(events.ConfigEventType))) &&
		f.labels(e.Attributes)
}

// eventsStream is GET /events?since=&until=&filters=. With until, the
// stream ends at that time (at once if it is past); without, it follows
// new events until the client goes. since reaches back only as far as the
// bus's history (the last shoalevents.DefaultHistory events).
func (d *Daemon) eventsStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilters(q.Get("filters"), validEventFilters...)
	if err != nil {
		writeError(w, err)
		return
	}
	since, err := parseTime("since", q.Get("since"))
	if err != nil {
		writeError(w, err)
		return
	}
	until, err := parseTime("until", q.Get("until"))
	if err != nil {
		writeError(w, err)
		return
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		writeError(w, badRequest("since time (%s) cannot be after until time (%s)", q.Get("since"), q.Get("until")))
		return
	}
	past, sub := d.events.Subscribe(since)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fw := newFlushWriter(w)
	fw.Flush()
	enc := json.NewEncoder(fw)
	send := func(e shoalevents.Event) bool {
		if !until.IsZero() && e.Time.After(until) {
			return false
		}
		if f.matchEvent(e) {
			return enc.Encode(messageOfEvent(e)) == nil
		}
		return true
	}
	for _, e := range past {
		if !send(e) {
			return
		}
	}
	ctx, cancel := d.streamContext(r)
	defer cancel()
	var end <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		end = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-end:
			return
		case e, ok := <-sub.C():
			if !ok || !send(e) {
				return // dropped for lagging (sub.Err) or past until
			}
		}
	}
}

// publish emits an event of the daemon's own (images, networks, swarm
// objects).
func (d *Daemon) publish(typ, action, id string, attrs map[string]string) {
	scope := shoalevents.ScopeLocal
	switch typ {
	case shoalevents.TypeNode, shoalevents.TypeService, string(events.SecretEventType), string(events.ConfigEventType):
		scope = shoalevents.ScopeSwarm
	}
	d.events.Publish(shoalevents.Event{Type: typ, Action: action, ID: id, Attributes: attrs, Scope: scope})
}

// publishContainer emits a container event of the daemon's own (restart,
// commit), with the attributes the engine gives its events.
func (d *Daemon) publishContainer(action string, c containers.Container, extra map[string]string) {
	d.publish(shoalevents.TypeContainer, action, c.ID, containers.EventAttributes(c, extra))
}

// networkTypes are the driver names Docker shows for its built-in networks.
var networkTypes = map[string]string{"bridge": "bridge", "none": "null", "host": "host"}

// networkConnected publishes the network connect of container c (its own
// namespace, on bridge or none) and remembers it for the disconnect.
func (d *Daemon) networkConnected(c containers.Container) {
	d.trackConnected(c)
	mode := c.Config.NetworkMode
	d.publish(shoalevents.TypeNetwork, "connect", mode, map[string]string{"container": c.ID, "name": mode, "type": networkTypes[mode]})
}

// trackConnected remembers that c is connected to its network, without an
// event: for a running container adopted from an earlier daemon, whose
// connect that daemon published.
func (d *Daemon) trackConnected(c containers.Container) {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if d.connected == nil {
		d.connected = map[string]string{}
	}
	d.connected[c.ID] = c.Config.NetworkMode
}

// networkDisconnected publishes the disconnect of a container connected by
// this daemon (or adopted running); a release of one that was not (a
// failed set-up, a second release) publishes nothing.
func (d *Daemon) networkDisconnected(id string) {
	d.netMu.Lock()
	mode, ok := d.connected[id]
	delete(d.connected, id)
	d.netMu.Unlock()
	if ok {
		d.publish(shoalevents.TypeNetwork, "disconnect", mode, map[string]string{"container": id, "name": mode, "type": networkTypes[mode]})
	}
}
