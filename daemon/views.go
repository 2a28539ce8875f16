package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/shoal-project/shoal/containerd/containers"
)

// humanDuration renders a duration as Docker's CLI and daemon do ("3 seconds", "About a minute").
func humanDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	m := int(d.Minutes())
	switch {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	h := int(d.Hours() + 0.5)
	switch {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// statusString is ps's STATUS column, as dockerd computes it.
func statusString(st containers.State, now time.Time) string {
	switch {
	case st.Running:
		return "Up " + humanDuration(now.Sub(st.StartedAt))
	case st.Status == "exited" && !st.FinishedAt.IsZero():
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	}
	return "Created"
}

func portsOf(c containers.Container) []map[string]any {
	out := []map[string]any{}
	for _, p := range c.Config.Network.Ports {
		m := map[string]any{"PrivatePort": p.ContainerPort, "PublicPort": p.HostPort, "Type": p.Protocol}
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		m["IP"] = ip
		out = append(out, m)
	}
	return out
}

func (d *Daemon) containerList(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	list := d.engine.List(boolParam(r, "all"))
	if n := r.URL.Query().Get("limit"); n != "" {
		var k int
		if _, err := fmt.Sscanf(n, "%d", &k); err == nil && k > 0 && k < len(list) {
			list = list[:k]
		}
	}
	out := []map[string]any{}
	for _, c := range list {
		out = append(out, map[string]any{
			"Id": c.ID, "Names": []string{c.Name}, "Image": c.Config.Image, "ImageID": c.ImageID,
			"Command": commandOf(c), "Created": c.Created.Unix(), "Ports": portsOf(c),
			"Labels": nonNilMap(c.Config.Labels), "State": stateName(c.State), "Status": statusString(c.State, now),
			"HostConfig":      map[string]string{"NetworkMode": c.Config.NetworkMode},
			"NetworkSettings": map[string]any{"Networks": networksOf(c)},
			"Mounts":          []any{},
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func stateName(st containers.State) string {
	if st.Running {
		return "running"
	}
	if st.Status == "" {
		return "created"
	}
	return st.Status
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func networksOf(c containers.Container) map[string]any {
	n := c.Config.Network
	if c.Config.NetworkMode != "bridge" {
		return map[string]any{c.Config.NetworkMode: map[string]any{}}
	}
	return map[string]any{"bridge": map[string]any{
		"IPAddress": n.IPAddress, "IPPrefixLen": n.IPPrefixLen, "Gateway": n.Gateway, "MacAddress": n.MacAddress,
	}}
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (d *Daemon) containerInspect(w http.ResponseWriter, r *http.Request) {
	c, err := d.engine.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	var cfg, hc map[string]any
	_ = json.Unmarshal(c.Config.RawConfig, &cfg)
	_ = json.Unmarshal(c.Config.RawHostConfig, &hc)
	if cfg == nil {
		cfg = map[string]any{}
	}
	if hc == nil {
		hc = map[string]any{}
	}
	hc["NetworkMode"] = c.Config.NetworkMode
	hostname := c.Config.Hostname
	if hostname == "" {
		hostname = c.ID[:12]
	}
	cfg["Hostname"] = hostname
	cfg["Image"] = c.Config.Image
	ports := map[string]any{}
	for _, p := range c.Config.Network.Ports {
		ports[fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)] = []map[string]string{{"HostIp": orAll(p.HostIP), "HostPort": fmt.Sprint(p.HostPort)}}
	}
	st := c.State
	writeJSON(w, http.StatusOK, map[string]any{
		"Id": c.ID, "Created": timeString(c.Created), "Path": c.Path, "Args": nonNilSlice(c.Args),
		"State": map[string]any{
			"Status": stateName(st), "Running": st.Running, "Paused": false, "Restarting": false,
			"OOMKilled": st.OOMKilled, "Dead": false, "Pid": st.Pid, "ExitCode": st.ExitCode, "Error": st.Error,
			"StartedAt": timeString(st.StartedAt), "FinishedAt": timeString(st.FinishedAt),
		},
		"Image": c.ImageID, "Name": c.Name, "RestartCount": 0, "Driver": "overlayfs", "Platform": "linux",
		"LogPath": d.engine.LogPath(c.ID), "HostConfig": hc, "Config": cfg, "Mounts": []any{},
		"NetworkSettings": map[string]any{
			"IPAddress": c.Config.Network.IPAddress, "IPPrefixLen": c.Config.Network.IPPrefixLen,
			"Gateway": c.Config.Network.Gateway, "MacAddress": c.Config.Network.MacAddress,
			"SandboxKey": c.Config.NetNSPath, "Ports": ports, "Networks": networksOf(c),
		},
	})
}

func orAll(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
