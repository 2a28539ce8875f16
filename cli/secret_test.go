package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// objectsFake is a fake daemon serving /secrets and /configs from maps
// by name, recording the create bodies and list filters.
type objectsFake struct {
	*fakeDaemon
	secrets map[string]swarm.Secret
	configs map[string]swarm.Config
	bodies  map[string][]byte
	filters map[string]string
}

func newObjectsFake(t *testing.T) *objectsFake {
	f := &objectsFake{fakeDaemon: newFakeDaemon(t), secrets: map[string]swarm.Secret{}, configs: map[string]swarm.Config{},
		bodies: map[string][]byte{}, filters: map[string]string{}}
	for _, kind := range []string{"secrets", "configs"} {
		f.mux.HandleFunc("POST /"+kind+"/create", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			f.mu.Lock()
			f.bodies[kind] = b
			f.mu.Unlock()
			var spec swarm.ConfigSpec
			json.Unmarshal(b, &spec)
			if len(spec.Data) == 0 {
				apiErr(w, 400, "rpc error: code = InvalidArgument desc = config data must be larger than 0 and less than 1024000 bytes")
				return
			}
			writeJSON(w, 201, map[string]string{"ID": "new-" + spec.Name})
		})
		f.mux.HandleFunc("GET /"+kind, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.filters[kind] = r.URL.Query().Get("filters")
			f.mu.Unlock()
			if kind == "secrets" {
				out := []swarm.Secret{}
				for _, s := range f.secrets {
					out = append(out, s)
				}
				writeJSON(w, 200, out)
				return
			}
			out := []swarm.Config{}
			for _, c := range f.configs {
				out = append(out, c)
			}
			writeJSON(w, 200, out)
		})
		f.mux.HandleFunc("GET /"+kind+"/{id}", func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if s, ok := f.secrets[id]; ok && kind == "secrets" {
				writeJSON(w, 200, s)
				return
			}
			if c, ok := f.configs[id]; ok && kind == "configs" {
				writeJSON(w, 200, c)
				return
			}
			apiErr(w, 404, kind[:len(kind)-1]+" "+id+" not found")
		})
		f.mux.HandleFunc("DELETE /"+kind+"/{id}", func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if id == "in-use" {
				apiErr(w, 400, "rpc error: code = InvalidArgument desc = "+kind[:len(kind)-1]+" 'in-use' is in use by the following service: web")
				return
			}
			if _, ok := f.secrets[id]; !ok && kind == "secrets" {
				apiErr(w, 404, "secret "+id+" not found")
				return
			}
			if _, ok := f.configs[id]; !ok && kind == "configs" {
				apiErr(w, 404, "config "+id+" not found")
				return
			}
			w.WriteHeader(204)
		})
	}
	return f
}

func writeTemp(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretCreate: the SecretSpec `secret create` sends, from a file or
// standard input, and what it refuses before sending anything.
func TestSecretCreate(t *testing.T) {
	f := newObjectsFake(t)
	file := writeTemp(t, "s3cr3t\n")
	r := runCLI(t, f.host, "", "secret", "create", "-l", "env=prod", "--label", "team", "db_pw", file)
	if r.code != 0 || r.stdout != "new-db_pw\n" {
		t.Fatalf("create: %+v", r)
	}
	// Data is base64 in JSON; labels given as a map, as docker sends them.
	sameJSON(t, f.bodies["secrets"], `{"Name":"db_pw","Labels":{"env":"prod","team":""},"Data":"czNjcjN0Cg=="}`)

	r = runCLI(t, f.host, "from stdin", "secret", "create", "app_key", "-")
	if r.code != 0 || r.stdout != "new-app_key\n" {
		t.Fatalf("create from stdin: %+v", r)
	}
	sameJSON(t, f.bodies["secrets"], `{"Name":"app_key","Labels":{},"Data":"ZnJvbSBzdGRpbg=="}`)

	empty := writeTemp(t, "")
	for _, tc := range []struct {
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{"", []string{"x"}, 1, "secret file is required\n"},
		{"", []string{"x", "-"}, 1, "error reading from STDIN: data is empty\n"},
		{"", []string{"x", empty}, 1, "error reading from " + empty + ": data is empty\n"},
		{"", []string{"x", "/nonexistent/file"}, 1, "error reading from /nonexistent/file: open /nonexistent/file: no such file or directory\n"},
		{"", []string{}, 1, `"shoal secret create" requires at least 1 and at most 2 arguments. See 'shoal secret create --help'.` + "\n"},
		{"", []string{"x", file, "y"}, 1, `"shoal secret create" requires at least 1 and at most 2 arguments. See 'shoal secret create --help'.` + "\n"},
		{"", []string{"--driver", "vault", "x"}, 125, "unknown flag: --driver\n"},
		{"", []string{"--template-driver", "golang", "x", file}, 125, "unknown flag: --template-driver\n"},
		{"", []string{"-l", "=v", "x", file}, 1, `invalid label: "=v": empty name` + "\n"},
	} {
		before := len(f.requests())
		r := runCLI(t, f.host, tc.stdin, append([]string{"secret", "create"}, tc.args...)...)
		if r.code != tc.code || r.stderr != tc.stderr || r.stdout != "" {
			t.Errorf("secret create %q: %+v", tc.args, r)
		}
		if sent := f.requests()[before:]; len(sent) != 0 {
			t.Errorf("secret create %q sent %q", tc.args, sent)
		}
	}
}

// TestConfigCreate: config create's body; empty data goes to the daemon,
// whose refusal is shown, as docker's does.
func TestConfigCreate(t *testing.T) {
	f := newObjectsFake(t)
	file := writeTemp(t, "server {}\n")
	r := runCLI(t, f.host, "", "config", "create", "-l", "app=web", "nginx_conf", file)
	if r.code != 0 || r.stdout != "new-nginx_conf\n" {
		t.Fatalf("create: %+v", r)
	}
	sameJSON(t, f.bodies["configs"], `{"Name":"nginx_conf","Labels":{"app":"web"},"Data":"c2VydmVyIHt9Cg=="}`)
	r = runCLI(t, f.host, "", "config", "create", "empty", "-")
	if r.code != 1 || r.stderr != "Error response from daemon: rpc error: code = InvalidArgument desc = config data must be larger than 0 and less than 1024000 bytes\n" {
		t.Fatalf("empty config: %+v", r)
	}
	sameJSON(t, f.bodies["configs"], `{"Name":"empty","Labels":{}}`)
	before := len(f.requests())
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"x"}, 1, `"shoal config create" requires exactly 2 arguments. See 'shoal config create --help'.` + "\n"},
		{[]string{"x", "/nonexistent/file"}, 1, "open /nonexistent/file: no such file or directory\n"},
		{[]string{"--template-driver", "golang", "x", file}, 125, "unknown flag: --template-driver\n"},
	} {
		r := runCLI(t, f.host, "", append([]string{"config", "create"}, tc.args...)...)
		if r.code != tc.code || r.stderr != tc.stderr {
			t.Errorf("config create %q: %+v", tc.args, r)
		}
	}
	if sent := f.requests()[before:]; len(sent) != 0 {
		t.Errorf("refused creates sent %q", sent)
	}
}

// objectTimes are a secret's or config's times against now.
func objectMeta(now time.Time, created, updated time.Duration) swarm.Meta {
	return swarm.Meta{Version: swarm.Version{Index: 11}, CreatedAt: now.Add(-created), UpdatedAt: now.Add(-updated)}
}

// TestObjectListOutput: docker's ls columns, order and formats.
func TestObjectListOutput(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	items := []swarmObject{
		{ID: "q2b9v3lq0ol9zitnm9ai7e6ms", Meta: objectMeta(now, 3*time.Hour, time.Hour), Annotations: swarm.Annotations{Name: "web10", Labels: map[string]string{"b": "2", "a": "1"}}},
		{ID: "7k1s4bvrfmdd0vz0clkrmkyql", Meta: objectMeta(now, 2*24*time.Hour, 5*time.Minute), Annotations: swarm.Annotations{Name: "web2"}, Driver: "vault"},
	}
	var b bytes.Buffer
	if err := secretKind.printList(&b, items, "", false, now); err != nil {
		t.Fatal(err)
	}
	want := "ID                          NAME      DRIVER    CREATED       UPDATED\n" +
		"7k1s4bvrfmdd0vz0clkrmkyql   web2      vault     2 days ago    5 minutes ago\n" +
		"q2b9v3lq0ol9zitnm9ai7e6ms   web10               3 hours ago   About an hour ago\n"
	if b.String() != want {
		t.Errorf("secret ls:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	configKind.printList(&b, items, "", false, now)
	want = "ID                          NAME      CREATED       UPDATED\n" +
		"7k1s4bvrfmdd0vz0clkrmkyql   web2      2 days ago    5 minutes ago\n" +
		"q2b9v3lq0ol9zitnm9ai7e6ms   web10     3 hours ago   About an hour ago\n"
	if b.String() != want {
		t.Errorf("config ls:\n%s\nwant:\n%s", b.String(), want)
	}
	for _, tc := range []struct {
		kind   objectKind
		format string
		quiet  bool
		want   string
	}{
		{secretKind, "", true, "7k1s4bvrfmdd0vz0clkrmkyql\nq2b9v3lq0ol9zitnm9ai7e6ms\n"},
		{secretKind, "table", true, "7k1s4bvrfmdd0vz0clkrmkyql\nq2b9v3lq0ol9zitnm9ai7e6ms\n"},
		// A format of one's own wins over -q, as in docker.
		{secretKind, "{{.Name}}", true, "web2\nweb10\n"},
		{secretKind, `{{.Name}} {{.Labels}} {{.Label "b"}}`, false, "web2  \nweb10 a=1,b=2 2\n"},
		{secretKind, "table {{.Name}}\t{{.Driver}}", false, "NAME      DRIVER\nweb2      vault\nweb10     \n"},
		{configKind, "table {{.ID}}\t{{.Labels}}", false, "ID                          LABELS\n7k1s4bvrfmdd0vz0clkrmkyql   \nq2b9v3lq0ol9zitnm9ai7e6ms   a=1,b=2\n"},
		{secretKind, "{{json .}}", false, `{"CreatedAt":"2 days ago","Driver":"vault","ID":"7k1s4bvrfmdd0vz0clkrmkyql","Labels":"","Name":"web2","UpdatedAt":"5 minutes ago"}` + "\n" +
			`{"CreatedAt":"3 hours ago","Driver":"","ID":"q2b9v3lq0ol9zitnm9ai7e6ms","Labels":"a=1,b=2","Name":"web10","UpdatedAt":"About an hour ago"}` + "\n"},
		{configKind, "{{json .}}", false, `{"CreatedAt":"2 days ago","ID":"7k1s4bvrfmdd0vz0clkrmkyql","Labels":"","Name":"web2","UpdatedAt":"5 minutes ago"}` + "\n" +
			`{"CreatedAt":"3 hours ago","ID":"q2b9v3lq0ol9zitnm9ai7e6ms","Labels":"a=1,b=2","Name":"web10","UpdatedAt":"About an hour ago"}` + "\n"},
	} {
		b.Reset()
		if err := tc.kind.printList(&b, items, tc.format, tc.quiet, now); err != nil || b.String() != tc.want {
			t.Errorf("%s ls --format %q -q=%v: %v\n%s\nwant:\n%s", tc.kind.name, tc.format, tc.quiet, err, b.String(), tc.want)
		}
	}
	b.Reset()
	// A config has no driver.
	if err := configKind.printList(&b, items, "{{.Driver}}", false, now); err == nil {
		t.Errorf("config ls --format {{.Driver}}: %q", b.String())
	}
}

// TestObjectListCommand: ls against a daemon: filters as given, the rows,
// the list alias.
func TestObjectListCommand(t *testing.T) {
	f := newObjectsFake(t)
	now := time.Now()
	f.secrets["s1"] = swarm.Secret{ID: "s1", Meta: objectMeta(now, time.Hour, time.Hour), Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pw"}}}
	f.configs["c1"] = swarm.Config{ID: "c1", Meta: objectMeta(now, time.Minute, time.Minute), Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "nginx"}, Data: []byte("x")}}
	r := runCLI(t, f.host, "", "secret", "ls", "-f", "name=db", "--filter", "label=a=b")
	if r.code != 0 || !regexp.MustCompile(`^ID\s+NAME\s+DRIVER\s+CREATED\s+UPDATED\ns1\s+db_pw\s+About an hour ago\s+About an hour ago\n$`).MatchString(r.stdout) {
		t.Fatalf("secret ls: %+v", r)
	}
	if f.filters["secrets"] != `{"label":{"a=b":true},"name":{"db":true}}` {
		t.Errorf("filters %s", f.filters["secrets"])
	}
	r = runCLI(t, f.host, "", "config", "list")
	if r.code != 0 || !regexp.MustCompile(`^ID\s+NAME\s+CREATED\s+UPDATED\nc1\s+nginx\s+About a minute ago\s+About a minute ago\n$`).MatchString(r.stdout) {
		t.Fatalf("config list: %+v", r)
	}
	if r := runCLI(t, f.host, "", "config", "ls", "-q"); r.stdout != "c1\n" {
		t.Fatalf("config ls -q: %+v", r)
	}
	if r := runCLI(t, f.host, "", "secret", "ls", "-f", "name"); r.code != 1 || r.stderr != "bad format of filter (expected name=value)\n" {
		t.Fatalf("bad filter: %+v", r)
	}
}

// TestObjectInspect: the JSON array as the daemon sent it, --format on the
// typed object, docker's --pretty, and the errors.
func TestObjectInspect(t *testing.T) {
	f := newObjectsFake(t)
	created := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	f.secrets["db_pw"] = swarm.Secret{ID: "s1", Meta: swarm.Meta{Version: swarm.Version{Index: 3}, CreatedAt: created, UpdatedAt: created.Add(time.Hour)},
		Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pw", Labels: map[string]string{"env": "prod", "flag": ""}}}}
	f.secrets["plain"] = swarm.Secret{ID: "s2", Meta: swarm.Meta{CreatedAt: created, UpdatedAt: created},
		Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "plain"}}}
	f.configs["nginx"] = swarm.Config{ID: "c1", Meta: swarm.Meta{CreatedAt: created, UpdatedAt: created},
		Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "nginx", Labels: map[string]string{"app": "web"}}, Data: []byte("server {}\n")}}

	r := runCLI(t, f.host, "", "secret", "inspect", "db_pw")
	var arr []map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &arr) != nil || len(arr) != 1 || arr[0]["ID"] != "s1" ||
		!strings.HasPrefix(r.stdout, "[\n    {\n        \"ID\": \"s1\",\n") {
		t.Fatalf("inspect: %+v", r)
	}
	r = runCLI(t, f.host, "", "config", "inspect", "-f", "{{.Spec.Name}} {{printf \"%s\" .Spec.Data}}", "nginx")
	if r.code != 0 || r.stdout != "nginx server {}\n\n" {
		t.Fatalf("inspect -f: %+v", r)
	}
	// One missing object: the others print, the exit status is 1.
	r = runCLI(t, f.host, "", "secret", "inspect", "--format", "{{.ID}}", "db_pw", "nosuch", "plain")
	if r.code != 1 || r.stdout != "s1\ns2\n" || r.stderr != "Error response from daemon: secret nosuch not found\n" {
		t.Fatalf("inspect with a missing secret: %+v", r)
	}

	wantSecret := "ID:              s1\nName:              db_pw\nLabels:\n - env=prod\n - flag\n" +
		"Driver:            \nCreated at:        2026-01-02 03:04:05.0000006 +0000 utc\nUpdated at:        2026-01-02 04:04:05.0000006 +0000 utc\n" +
		"ID:              s2\nName:              plain\n" +
		"Driver:            \nCreated at:        2026-01-02 03:04:05.0000006 +0000 utc\nUpdated at:        2026-01-02 03:04:05.0000006 +0000 utc\n"
	for _, args := range [][]string{{"--pretty", "db_pw", "plain"}, {"--format", "pretty", "db_pw", "plain"}, {"--pretty", "--format", "{{.ID}}", "db_pw", "plain"}} {
		r = runCLI(t, f.host, "", append([]string{"secret", "inspect"}, args...)...)
		if r.code != 0 || r.stdout != wantSecret {
			t.Errorf("secret inspect %q: %+v\nwant:\n%s", args, r, wantSecret)
		}
	}
	r = runCLI(t, f.host, "", "config", "inspect", "--pretty", "nginx")
	wantConfig := "ID:\t\t\tc1\nName:\t\t\tnginx\nLabels:\n - app=web\n" +
		"Created at:            \t2026-01-02 03:04:05.0000006 +0000 utc\nUpdated at:            \t2026-01-02 03:04:05.0000006 +0000 utc\n" +
		"Data:\nserver {}\n\n"
	if r.code != 0 || r.stdout != wantConfig {
		t.Errorf("config inspect --pretty: %+v\nwant:\n%q", r, wantConfig)
	}
	// As docker's: in the pretty form the first missing object is the
	// whole answer.
	r = runCLI(t, f.host, "", "secret", "inspect", "--pretty", "db_pw", "nosuch")
	if r.code != 1 || r.stdout != "" || r.stderr != "Error response from daemon: secret nosuch not found\n" {
		t.Errorf("pretty with a missing secret: %+v", r)
	}
	before := len(f.requests())
	r = runCLI(t, f.host, "", "secret", "inspect", "--format", "pretty {{.ID}}", "db_pw")
	if r.code != 1 || r.stderr != "cannot supply extra formatting options to the pretty template\n" {
		t.Errorf("pretty with a template: %+v", r)
	}
	if sent := f.requests()[before:]; len(sent) != 0 {
		t.Errorf("refused inspect sent %q", sent)
	}
}

// TestObjectRemove: each name removed is printed; the failures are the
// errors, after the others were removed, and the exit status is 1.
func TestObjectRemove(t *testing.T) {
	f := newObjectsFake(t)
	f.secrets["a"] = swarm.Secret{ID: "a"}
	f.secrets["b"] = swarm.Secret{ID: "b"}
	f.configs["c"] = swarm.Config{ID: "c"}
	r := runCLI(t, f.host, "", "secret", "rm", "a", "nosuch", "in-use", "b")
	if r.code != 1 || r.stdout != "a\nb\n" ||
		r.stderr != "Error response from daemon: secret nosuch not found\nError response from daemon: rpc error: code = InvalidArgument desc = secret 'in-use' is in use by the following service: web\n" {
		t.Fatalf("secret rm: %+v", r)
	}
	want := []string{"DELETE /secrets/a", "DELETE /secrets/nosuch", "DELETE /secrets/in-use", "DELETE /secrets/b"}
	if got := f.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests %q", got)
	}
	if r := runCLI(t, f.host, "", "config", "remove", "c"); r.code != 0 || r.stdout != "c\n" || r.stderr != "" {
		t.Fatalf("config remove: %+v", r)
	}
	if r := runCLI(t, f.host, "", "config", "rm"); r.code != 1 || r.stderr != `"shoal config rm" requires at least 1 argument. See 'shoal config rm --help'.`+"\n" {
		t.Fatalf("config rm without names: %+v", r)
	}
	// A daemon that cannot be reached ends it at once.
	r = runCLI(t, "unix:///nonexistent.sock", "", "secret", "rm", "a", "b")
	if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "Cannot connect to the shoal daemon") {
		t.Fatalf("no daemon: %+v", r)
	}
}
