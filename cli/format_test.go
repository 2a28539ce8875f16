package cli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
)

func TestHumanSize(t *testing.T) {
	cases := map[int64]string{0: "0B", 999: "999B", 4096: "4.1kB", 1240000: "1.24MB", 1_200_000: "1.2MB", 5_000_000_000: "5GB"}
	for in, want := range cases {
		if got := humanSize(in); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestHumanAgo(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "Less than a second ago"},
		{time.Second, "1 second ago"},
		{3 * time.Second, "3 seconds ago"},
		{70 * time.Second, "About a minute ago"},
		{2 * time.Minute, "2 minutes ago"},
		{time.Hour, "About an hour ago"},
		{5 * time.Hour, "5 hours ago"},
		{72 * time.Hour, "3 days ago"},
		{21 * 24 * time.Hour, "3 weeks ago"},
	}
	for _, c := range cases {
		if got := humanAgo(now.Add(-c.d), now); got != c.want {
			t.Errorf("humanAgo(-%v) = %q, want %q", c.d, got, c.want)
		}
	}
	if humanAgo(time.Time{}, now) != "" {
		t.Error("zero time should render empty")
	}
}

func TestContainerStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		state             string
		code              int
		started, finished time.Duration
		want              string
	}{
		{"running", 0, 3 * time.Second, 0, "Up 3 seconds"},
		{"running", 0, 2 * time.Minute, 0, "Up 2 minutes"},
		{"exited", 0, 10 * time.Second, 2 * time.Second, "Exited (0) 2 seconds ago"},
		{"exited", 137, time.Hour, 5 * time.Minute, "Exited (137) 5 minutes ago"},
		{"created", 0, 0, 0, "Created"},
		{"", 0, 0, 0, "Created"},
		{"paused", 0, 4 * time.Second, 0, "Up 4 seconds (Paused)"},
		{"removing", 0, 0, 0, "Removal In Progress"},
		{"dead", 0, 0, 0, "Dead"},
	}
	for _, c := range cases {
		var st, fin time.Time
		if c.started > 0 {
			st = now.Add(-c.started)
		}
		if c.finished > 0 {
			fin = now.Add(-c.finished)
		}
		if got := containerStatus(c.state, c.code, st, fin, now); got != c.want {
			t.Errorf("containerStatus(%q, %d) = %q, want %q", c.state, c.code, got, c.want)
		}
	}
}

func TestQuoteCommand(t *testing.T) {
	cases := []struct {
		in      string
		noTrunc bool
		want    string
	}{
		{"sleep 30", false, `"sleep 30"`},
		{"sh -c 'echo started; echo oops'", false, `"sh -c 'echo started…"`},
		{"sh -c 'echo started; echo oops'", true, `"sh -c 'echo started; echo oops'"`},
		{`echo "x"`, false, `"echo \"x\""`},
	}
	for _, c := range cases {
		if got := quoteCommand(c.in, c.noTrunc); got != c.want {
			t.Errorf("quoteCommand(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestDisplayPorts(t *testing.T) {
	any4 := netip.MustParseAddr("0.0.0.0")
	any6 := netip.MustParseAddr("::")
	cases := []struct {
		ports []container.PortSummary
		want  string
	}{
		{nil, ""},
		{[]container.PortSummary{{IP: any4, PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}, "0.0.0.0:8080->80/tcp"},
		{[]container.PortSummary{{PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}, "0.0.0.0:8080->80/tcp"},
		{[]container.PortSummary{{IP: any6, PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}, "[::]:8080->80/tcp"},
		{[]container.PortSummary{{PrivatePort: 80, Type: "tcp"}, {PrivatePort: 81, Type: "tcp"}, {PrivatePort: 53, Type: "udp"}}, "53/udp, 80-81/tcp"},
		{[]container.PortSummary{{IP: any4, PrivatePort: 80, PublicPort: 80, Type: "tcp"}, {IP: any4, PrivatePort: 81, PublicPort: 81, Type: "tcp"}}, "0.0.0.0:80-81->80-81/tcp"},
		{[]container.PortSummary{{IP: any4, PrivatePort: 443, PublicPort: 8443, Type: "tcp"}, {PrivatePort: 80, Type: "tcp"}}, "80/tcp, 0.0.0.0:8443->443/tcp"},
	}
	for _, c := range cases {
		if got := displayPorts(c.ports); got != c.want {
			t.Errorf("displayPorts(%v) = %q, want %q", c.ports, got, c.want)
		}
	}
}

func TestRunStartErrorCodes(t *testing.T) {
	cases := []struct {
		msg  string
		code int
	}{
		{`Error response from daemon: exec: "/nonexistent": stat /nonexistent: no such file or directory`, 127},
		{`Error response from daemon: exec: "foo": executable file not found in $PATH`, 127},
		{`Error response from daemon: exec /etc/passwd: permission denied`, 126},
		{`Error response from daemon: exec /etc: is a directory`, 126},
		{`Error response from daemon: Bind for 0.0.0.0:80 failed: port is already allocated`, 125},
		{`Cannot connect to the shoal daemon at unix:///x. Is the daemon running?`, 125},
	}
	for _, c := range cases {
		if got := runStartError(errString(c.msg)); got.Code != c.code || got.Status != c.msg {
			t.Errorf("runStartError(%q) = %+v, want code %d", c.msg, got, c.code)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestExitStatus(t *testing.T) {
	cases := []struct {
		err  error
		code int
		msg  string
	}{
		{StatusError{Code: 3}, 3, ""},
		{StatusError{Status: "bad\nthing", Code: 125}, 125, "bad thing"},
		{errString("Error response from daemon: No such container: x"), 1, "Error response from daemon: No such container: x"},
		{errString("  two\n\nlines  "), 1, "two lines"},
	}
	for _, c := range cases {
		code, msg := exitStatus(c.err)
		if code != c.code || msg != c.msg {
			t.Errorf("exitStatus(%v) = %d %q, want %d %q", c.err, code, msg, c.code, c.msg)
		}
	}
}

func TestTemplateFuncs(t *testing.T) {
	cases := []struct {
		format string
		data   any
		want   string
	}{
		{`{{json .}}`, map[string]int{"a": 1}, `{"a":1}`},
		{`{{json .}}`, "<&>", `"<&>"`},
		{`{{join . ","}}`, []string{"a", "b"}, "a,b"},
		{`{{upper .}} {{lower .}} {{title .}}`, "hello World", "HELLO WORLD hello world Hello World"},
		{`{{truncate . 3}}`, "abcdef", "abc"},
		{`{{pad . 1 2}}|`, "x", " x  |"},
		{`{{index (split . ":") 1}}`, "a:b", "b"},
	}
	for _, c := range cases {
		tmpl, err := parseTemplate(c.format)
		if err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, c.data); err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		if b.String() != c.want {
			t.Errorf("%s on %v = %q, want %q", c.format, c.data, b.String(), c.want)
		}
	}
	if _, err := parseTemplate("{{.Foo"); err == nil || !strings.HasPrefix(err.Error(), "template parsing error") {
		t.Fatalf("bad template: %v", err)
	}
}

func TestRenderRowsTable(t *testing.T) {
	now := time.Now()
	rows := []any{
		imageRow{img: image.Summary{ID: "sha256:0123456789abcdef0123", Created: now.Add(-2 * time.Minute).Unix(), Size: 1240000}, repo: "busybox", tag: "latest", now: now},
		imageRow{img: image.Summary{ID: "sha256:fedcba9876543210fedc", Created: now.Add(-3 * time.Hour).Unix(), Size: 0}, repo: "<none>", tag: "<none>", now: now},
	}
	var b bytes.Buffer
	if err := renderRows(&b, parseTableFormat("table", defaultImageFormat), imageHeaders, rows); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n" +
		"busybox      latest    0123456789ab   2 minutes ago   1.24MB\n" +
		"<none>       <none>    fedcba987654   3 hours ago     0B\n"
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := renderRows(&b, parseTableFormat(`{{.Repository}}:{{.Tag}}`, defaultImageFormat), imageHeaders, rows); err != nil {
		t.Fatal(err)
	}
	if b.String() != "busybox:latest\n<none>:<none>\n" {
		t.Fatalf("plain format: %q", b.String())
	}

	b.Reset()
	if err := renderRows(&b, parseTableFormat(`table {{.ID}}\t{{.Size}}`, ""), imageHeaders, rows[:1]); err != nil {
		t.Fatal(err)
	}
	if b.String() != "IMAGE ID       SIZE\n0123456789ab   1.24MB\n" {
		t.Fatalf("custom table: %q", b.String())
	}

	b.Reset()
	if err := renderRows(&b, parseTableFormat(`{{json .}}`, ""), imageHeaders, rows[:1]); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b.Bytes(), &m); err != nil || m["Repository"] != "busybox" || m["ID"] != "0123456789ab" {
		t.Fatalf("json row: %s %v", b.String(), err)
	}

	if err := renderRows(&b, parseTableFormat(`{{.Nope}}`, ""), imageHeaders, rows); err == nil {
		t.Fatal("unknown field accepted")
	}
}

func TestPsRowCells(t *testing.T) {
	now := time.Now()
	r := containerRow{c: container.Summary{
		ID: "0123456789abcdef0123456789abcdef", Names: []string{"/web", "/other/alias"}, Image: "busybox",
		Command: "sh -c 'while true; do sleep 1; done'", Created: now.Add(-3 * time.Second).Unix(),
		Labels: map[string]string{"b": "2", "a": "1"},
	}, status: "Up 3 seconds", now: now}
	var b bytes.Buffer
	if err := renderRows(&b, parseTableFormat("table", defaultContainerFormat), containerHeaders, []any{r}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("ps output:\n%s", b.String())
	}
	for _, h := range []string{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header %q missing: %q", h, lines[0])
		}
	}
	if !strings.HasPrefix(lines[1], "0123456789ab   busybox   \"sh -c 'while true; …\"   3 seconds ago   Up 3 seconds") || !strings.HasSuffix(lines[1], " web") {
		t.Fatalf("ps row: %q", lines[1])
	}
	if r.Labels() != "a=1,b=2" || r.Label("b") != "2" {
		t.Fatalf("labels %q", r.Labels())
	}
}

func TestFormatInspectFallsBackToRaw(t *testing.T) {
	raw := []byte(`{"Id":"abc","State":{"OOMKilled":true,"ExitCode":137},"HostConfig":{"NanoCpus":500000000},"NetworkSettings":{"IPAddress":"198.19.0.2"}}`)
	var typed container.InspectResponse
	if err := json.Unmarshal(raw, &typed); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"{{.State.OOMKilled}} {{.State.ExitCode}}": "true 137",
		"{{.Id}}":                        "abc",
		"{{.ID}}":                        "abc",
		"{{.HostConfig.NanoCpus}}":       "500000000",
		"{{.NetworkSettings.IPAddress}}": "198.19.0.2",
		"{{json .State.ExitCode}}":       "137",
	}
	for format, want := range cases {
		tmpl, err := parseTemplate(format)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := formatInspect(&b, tmpl, typed, raw); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if got := strings.TrimSuffix(b.String(), "\n"); got != want {
			t.Errorf("%s = %q, want %q", format, got, want)
		}
	}
	tmpl, _ := parseTemplate("{{.Missing.Field}}")
	if err := formatInspect(&bytes.Buffer{}, tmpl, typed, raw); err == nil {
		t.Error("missing key accepted")
	}
}

func TestImageRowsAndMatch(t *testing.T) {
	now := time.Now()
	items := []image.Summary{
		{ID: "sha256:aaa", RepoTags: []string{"busybox:latest", "mybox:v1"}, Created: 1},
		{ID: "sha256:bbb", Created: 2},
		{ID: "sha256:ccc", RepoTags: []string{"localhost:5000/x/y:2"}, Created: 3},
	}
	var got []string
	for _, r := range imageRows(items, "", false, now) {
		got = append(got, r.Repository()+":"+r.Tag())
	}
	if strings.Join(got, " ") != "localhost:5000/x/y:2 <none>:<none> busybox:latest mybox:v1" {
		t.Fatalf("rows %v", got)
	}
	for pattern, want := range map[string]int{"mybox": 1, "mybox:v1": 1, "mybox:v2": 0, "busy*": 1, "localhost:5000/x/y": 1, "nosuch": 0} {
		if n := len(imageRows(items, pattern, false, now)); n != want {
			t.Errorf("match %q: %d rows, want %d", pattern, n, want)
		}
	}
}
