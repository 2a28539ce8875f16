package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/pflag"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// TestParseFileRef: docker's --secret/--config syntax, its defaults and
// the values refused.
func TestParseFileRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fileRef
		err  string
	}{
		{in: "app_key", want: fileRef{source: "app_key", target: "app_key", uid: "0", gid: "0", mode: 0o444}},
		{in: "source=db_pw,target=/etc/db/pw,uid=100,gid=101,mode=0400",
			want: fileRef{source: "db_pw", target: "/etc/db/pw", uid: "100", gid: "101", mode: 0o400}},
		// src is source's alias; keys are read in any case, as docker's.
		{in: "src=a,TARGET=b", want: fileRef{source: "a", target: "b", uid: "0", gid: "0", mode: 0o444}},
		// The target defaults to the name, an empty one too.
		{in: "source=a,target=", want: fileRef{source: "a", target: "a", uid: "0", gid: "0", mode: 0o444}},
		// Modes in Go's syntax, as docker parses them: 0 starts an octal
		// number, 0x a hex one; without it the number is decimal.
		{in: "source=a,mode=0o640", want: fileRef{source: "a", target: "a", uid: "0", gid: "0", mode: 0o640}},
		{in: "source=a,mode=0x1ff", want: fileRef{source: "a", target: "a", uid: "0", gid: "0", mode: 0o777}},
		{in: "source=a,mode=256", want: fileRef{source: "a", target: "a", uid: "0", gid: "0", mode: 0o400}},
		{in: "source=a,mode=0", want: fileRef{source: "a", target: "a", uid: "0", gid: "0", mode: 0}},
		// CSV quoting keeps a comma in a value.
		{in: `"source=a,b",target=c`, want: fileRef{source: "a,b", target: "c", uid: "0", gid: "0", mode: 0o444}},

		{in: "source=a,bogus=1", err: "invalid field in secret request: bogus"},
		{in: "source=a,target", err: "invalid field 'target' must be a key=value pair"},
		{in: "a,b", err: "invalid field 'a' must be a key=value pair"},
		{in: "=a", err: "invalid field '=a' must be a key=value pair"},
		{in: "target=/x", err: "source is required"},
		{in: "source=a,mode=rw", err: `invalid mode specified: strconv.ParseUint: parsing "rw": invalid syntax`},
		{in: "source=a,mode=0999", err: `invalid mode specified: strconv.ParseUint: parsing "0999": invalid syntax`},
		{in: "source=a,mode=-1", err: `invalid mode specified`},
		{in: "source=a,mode=01000", err: "invalid mode specified: 01000 is not a permission mode (0000-0777)"},
		{in: "source=a,uid=root", err: `invalid uid specified: "root" is not a numeric ID`},
		{in: "source=a,gid=-1", err: `invalid gid specified: "-1" is not a numeric ID`},
		{in: `"source=a`, err: "extraneous or missing"},
	} {
		got, err := parseFileRef("secret", tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseFileRef("config", "source=a,bogus=1"); err == nil || err.Error() != "invalid field in config request: bogus" {
		t.Errorf("config with a bad key: %v", err)
	}
}

// TestSecretAndConfigFlags: the flag values build docker's references,
// and a bad one is pflag's error about the flag.
func TestSecretAndConfigFlags(t *testing.T) {
	var secrets secretOpt
	var configs configOpt
	fl := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fl.Var(&secrets, "secret", "")
	fl.Var(&configs, "config", "")
	if err := fl.Parse([]string{"--secret", "app_key", "--secret", "src=db,target=/etc/db,mode=0400", "--config", "src=nginx,target=/etc/nginx.conf,uid=33,gid=33", "--config", "motd"}); err != nil {
		t.Fatal(err)
	}
	wantS := []*swarm.SecretReference{
		{SecretName: "app_key", File: &swarm.SecretReferenceFileTarget{Name: "app_key", UID: "0", GID: "0", Mode: 0o444}},
		{SecretName: "db", File: &swarm.SecretReferenceFileTarget{Name: "/etc/db", UID: "0", GID: "0", Mode: 0o400}},
	}
	if !reflect.DeepEqual(secrets.refs, wantS) {
		t.Errorf("secrets %s", mustJSON(secrets.refs))
	}
	// Docker sends a config's target as given, the name by default (its
	// daemon places a relative one under /).
	wantC := []*swarm.ConfigReference{
		{ConfigName: "nginx", File: &swarm.ConfigReferenceFileTarget{Name: "/etc/nginx.conf", UID: "33", GID: "33", Mode: 0o444}},
		{ConfigName: "motd", File: &swarm.ConfigReferenceFileTarget{Name: "motd", UID: "0", GID: "0", Mode: 0o444}},
	}
	if !reflect.DeepEqual(configs.refs, wantC) {
		t.Errorf("configs %s", mustJSON(configs.refs))
	}
	if s := secrets.String(); s != "app_key -> app_key, db -> /etc/db" {
		t.Errorf("String() = %q", s)
	}
	err := fl.Parse([]string{"--secret", "source=a,bogus=1"})
	if err == nil || err.Error() != `invalid argument "source=a,bogus=1" for "--secret" flag: invalid field in secret request: bogus` {
		t.Errorf("bad --secret: %v", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDuplicateTargets: two files at one place are refused, a relative
// secret target being under /run/secrets and a relative config target
// under /.
func TestDuplicateTargets(t *testing.T) {
	sec := func(name, target string) *swarm.SecretReference {
		return &swarm.SecretReference{SecretName: name, File: &swarm.SecretReferenceFileTarget{Name: target}}
	}
	cfg := func(name, target string) *swarm.ConfigReference {
		return &swarm.ConfigReference{ConfigName: name, File: &swarm.ConfigReferenceFileTarget{Name: target}}
	}
	if err := checkSecretTargets([]*swarm.SecretReference{sec("a", "a"), sec("b", "b"), sec("c", "/etc/c")}); err != nil {
		t.Errorf("distinct secrets: %v", err)
	}
	for _, refs := range [][]*swarm.SecretReference{
		{sec("a", "x"), sec("b", "x")},
		{sec("a", "x"), sec("b", "/run/secrets/x")},
		{sec("a", "/etc/x"), sec("b", "/etc//x")},
	} {
		err := checkSecretTargets(refs)
		if err == nil || err.Error() != "invalid service specification: duplicate secret target for b not allowed" || !errors.Is(err, ErrInvalidServiceSpec) {
			t.Errorf("%s: %v", mustJSON(refs), err)
		}
	}
	if err := checkConfigTargets([]*swarm.ConfigReference{cfg("a", "a"), cfg("b", "/b"), {ConfigName: "cred", Runtime: &swarm.ConfigReferenceRuntimeTarget{}}}); err != nil {
		t.Errorf("distinct configs: %v", err)
	}
	if err := checkConfigTargets([]*swarm.ConfigReference{cfg("a", "a"), cfg("b", "/a")}); err == nil || !strings.HasSuffix(err.Error(), "duplicate config target for b not allowed") {
		t.Errorf("configs at one file: %v", err)
	}
}

// fakeFiles is a SecretList/ConfigList that records its filters.
type fakeFiles struct {
	secrets []swarm.Secret
	configs []swarm.Config
	asked   []apiclient.Filters
}

func (f *fakeFiles) SecretList(_ context.Context, fl apiclient.Filters) ([]swarm.Secret, error) {
	f.asked = append(f.asked, fl)
	return f.secrets, nil
}

func (f *fakeFiles) ConfigList(_ context.Context, fl apiclient.Filters) ([]swarm.Config, error) {
	f.asked = append(f.asked, fl)
	return f.configs, nil
}

// TestResolveSecrets: names become IDs by exact name (the daemon's "name"
// filter is a prefix), in the order given, the flags' values untouched.
func TestResolveSecrets(t *testing.T) {
	api := &fakeFiles{secrets: []swarm.Secret{
		{ID: "id-db2", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db2"}}},
		{ID: "id-db", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db"}}},
	}}
	var o secretOpt
	o.Set("db")
	o.Set("src=db,target=/etc/db")
	got, err := resolveSecrets(context.Background(), api, o.refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SecretID != "id-db" || got[1].SecretID != "id-db" || got[1].File.Name != "/etc/db" {
		t.Fatalf("resolved %s", mustJSON(got))
	}
	if o.refs[0].SecretID != "" || got[0].File == o.refs[0].File {
		t.Errorf("the flag's references were changed or shared: %s", mustJSON(o.refs))
	}
	if len(api.asked) != 1 || !reflect.DeepEqual(api.asked[0], apiclient.Filters{"name": {"db", "db"}}) {
		t.Errorf("filters %v", api.asked)
	}
	o = secretOpt{}
	o.Set("d")
	if _, err := resolveSecrets(context.Background(), api, o.refs); err == nil || err.Error() != "secret not found: d" {
		t.Errorf("a prefix taken for the name: %v", err)
	}
	if got, err := resolveSecrets(context.Background(), api, nil); got != nil || err != nil || len(api.asked) != 2 {
		t.Errorf("no secrets: %v %v, %d lists", got, err, len(api.asked))
	}
}

// TestUpdateServiceFiles: --secret-rm by name, then --secret-add; a
// target taken twice is refused before the names are looked up.
func TestUpdateServiceFiles(t *testing.T) {
	api := &fakeFiles{
		secrets: []swarm.Secret{{ID: "id-c", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "c"}}}},
		configs: []swarm.Config{{ID: "id-y", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "y"}}}},
	}
	file := func(n string) *swarm.SecretReferenceFileTarget {
		return &swarm.SecretReferenceFileTarget{Name: n, UID: "0", GID: "0", Mode: 0o444}
	}
	cur := []*swarm.SecretReference{
		{SecretID: "id-a", SecretName: "a", File: file("a")},
		{SecretID: "id-b", SecretName: "b", File: file("b")},
	}
	var add secretOpt
	add.Set("source=c,target=a")
	got, err := updateServiceSecrets(context.Background(), api, cur, add.refs, []string{"a", "nosuch"})
	want := []*swarm.SecretReference{cur[1], {SecretID: "id-c", SecretName: "c", File: file("a")}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("update: %s, %v", mustJSON(got), err)
	}
	// Without the removal, c's target is a's.
	api.asked = nil
	_, err = updateServiceSecrets(context.Background(), api, cur, add.refs, nil)
	if err == nil || !strings.HasSuffix(err.Error(), "duplicate secret target for c not allowed") || len(api.asked) != 0 {
		t.Fatalf("duplicate target: %v, %d lists", err, len(api.asked))
	}
	// Removal alone asks nothing.
	got, err = updateServiceSecrets(context.Background(), api, cur, nil, []string{"b"})
	if err != nil || len(got) != 1 || got[0].SecretName != "a" || len(api.asked) != 0 {
		t.Fatalf("removal: %s %v", mustJSON(got), err)
	}

	curC := []*swarm.ConfigReference{{ConfigID: "id-x", ConfigName: "x", File: &swarm.ConfigReferenceFileTarget{Name: "/x"}}}
	var addC configOpt
	addC.Set("y")
	gotC, err := updateServiceConfigs(context.Background(), api, curC, addC.refs, nil)
	if err != nil || len(gotC) != 2 || gotC[0] != curC[0] || gotC[1].ConfigID != "id-y" || gotC[1].File.Name != "y" {
		t.Fatalf("config update: %s, %v", mustJSON(gotC), err)
	}
	addC = configOpt{}
	addC.Set("src=y,target=x")
	if _, err := updateServiceConfigs(context.Background(), api, curC, addC.refs, nil); err == nil || !strings.Contains(err.Error(), "duplicate config target for y") {
		t.Fatalf("config at /x twice: %v", err)
	}
	addC = configOpt{}
	addC.Set("nosuch")
	if _, err := updateServiceConfigs(context.Background(), api, curC, addC.refs, []string{"x"}); err == nil || err.Error() != "config not found: nosuch" {
		t.Fatalf("missing config: %v", err)
	}
}

// secretsFake is a cluster fake that also serves GET /secrets and GET
// /configs by exact name, recording their filters.
func secretsFake(t *testing.T) *clusterFake {
	f := newClusterFake(t)
	serve := func(kind string, objs map[string]string) {
		f.mux.HandleFunc("GET /"+kind, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.queries["GET /"+kind] = r.URL.Query().Get("filters")
			f.mu.Unlock()
			var filters map[string]map[string]bool
			json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters)
			out := []map[string]any{}
			for name, id := range objs {
				for prefix := range filters["name"] {
					if strings.HasPrefix(name, prefix) {
						out = append(out, map[string]any{"ID": id, "Spec": map[string]any{"Name": name}})
						break
					}
				}
			}
			writeJSON(w, 200, out)
		})
	}
	serve("secrets", map[string]string{"app_key": "sec-app", "db_pw": "sec-db", "db_pw2": "sec-db2"})
	serve("configs", map[string]string{"nginx_conf": "cfg-nginx"})
	return f
}

// TestServiceCreateSecretsBody: the references service create sends, as
// docker's CLI sends them, and what it refuses before creating anything.
func TestServiceCreateSecretsBody(t *testing.T) {
	f := secretsFake(t)
	r := runCLI(t, f.host, "", "service", "create", "-d", "--no-resolve-image", "--name", "web",
		"--secret", "app_key", "--secret", "source=db_pw,target=/etc/db/password,uid=100,gid=101,mode=0400",
		"--config", "src=nginx_conf,target=/etc/nginx/nginx.conf", "--config", "nginx_conf",
		"busybox")
	if r.code != 0 || r.stdout != "svcid0123456789abcdef\n" {
		t.Fatalf("create: %+v", r)
	}
	var spec struct {
		TaskTemplate struct{ ContainerSpec json.RawMessage }
	}
	if err := json.Unmarshal(f.body("POST /services/create"), &spec); err != nil {
		t.Fatal(err)
	}
	var cs struct{ Secrets, Configs json.RawMessage }
	json.Unmarshal(spec.TaskTemplate.ContainerSpec, &cs)
	sameJSON(t, cs.Secrets, `[
		{"File": {"Name": "app_key", "UID": "0", "GID": "0", "Mode": 292}, "SecretID": "sec-app", "SecretName": "app_key"},
		{"File": {"Name": "/etc/db/password", "UID": "100", "GID": "101", "Mode": 256}, "SecretID": "sec-db", "SecretName": "db_pw"}
	]`)
	sameJSON(t, cs.Configs, `[
		{"File": {"Name": "/etc/nginx/nginx.conf", "UID": "0", "GID": "0", "Mode": 292}, "ConfigID": "cfg-nginx", "ConfigName": "nginx_conf"},
		{"File": {"Name": "nginx_conf", "UID": "0", "GID": "0", "Mode": 292}, "ConfigID": "cfg-nginx", "ConfigName": "nginx_conf"}
	]`)
	f.mu.Lock()
	sq, cq := f.queries["GET /secrets"], f.queries["GET /configs"]
	f.mu.Unlock()
	if sq != `{"name":{"app_key":true,"db_pw":true}}` || cq != `{"name":{"nginx_conf":true}}` {
		t.Errorf("lookups %s %s", sq, cq)
	}

	// Without secrets or configs the spec has none and nothing is looked up.
	before := len(f.requests())
	if r := runCLI(t, f.host, "", "service", "create", "-d", "--no-resolve-image", "busybox"); r.code != 0 {
		t.Fatalf("plain create: %+v", r)
	}
	if b := string(f.body("POST /services/create")); strings.Contains(b, "Secrets") || strings.Contains(b, "Configs") {
		t.Errorf("plain create body %s", b)
	}
	for _, req := range f.requests()[before:] {
		if strings.HasPrefix(req, "GET /secrets") || strings.HasPrefix(req, "GET /configs") {
			t.Errorf("plain create asked %s", req)
		}
	}

	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
		asked  []string // the requests made
	}{
		{[]string{"--secret", "db"}, 1, "secret not found: db\n", []string{"GET /secrets"}},
		{[]string{"--config", "nosuch"}, 1, "config not found: nosuch\n", []string{"GET /configs"}},
		{[]string{"--secret", "app_key", "--secret", "source=db_pw,target=app_key"}, 1,
			"invalid service specification: duplicate secret target for db_pw not allowed\n", nil},
		{[]string{"--config", "src=nginx_conf,target=/c", "--config", "src=nginx_conf,target=c"}, 1,
			"invalid service specification: duplicate config target for nginx_conf not allowed\n", nil},
		{[]string{"--secret", "source=a,bogus=1"}, 125,
			`invalid argument "source=a,bogus=1" for "--secret" flag: invalid field in secret request: bogus` + "\n", nil},
		{[]string{"--config", "source=a,mode=0800"}, 125,
			`invalid argument "source=a,mode=0800" for "--config" flag: invalid mode specified: strconv.ParseUint: parsing "0800": invalid syntax` + "\n", nil},
	} {
		before := len(f.requests())
		args := append(append([]string{"service", "create", "-d", "--no-resolve-image"}, tc.args...), "busybox")
		r := runCLI(t, f.host, "", args...)
		if r.code != tc.code || r.stderr != tc.stderr {
			t.Errorf("%q: %+v", tc.args, r)
		}
		if asked := f.requests()[before:]; len(asked) != len(tc.asked) || (len(asked) > 0 && !reflect.DeepEqual(asked, tc.asked)) {
			t.Errorf("%q sent %q, want %q", tc.args, f.requests()[before:], tc.asked)
		}
	}
}

// TestServiceUpdateSecrets: --secret-rm/--secret-add and --config-rm/
// --config-add edit the service's references.
func TestServiceUpdateSecrets(t *testing.T) {
	f := secretsFake(t)
	one := uint64(1)
	file := &swarm.SecretReferenceFileTarget{Name: "app_key", UID: "0", GID: "0", Mode: 0o444}
	f.services["webid"] = swarm.Service{ID: "webid", Meta: swarm.Meta{Version: swarm.Version{Index: 4}}, Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web"},
		Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest",
			Secrets: []*swarm.SecretReference{{SecretID: "sec-app", SecretName: "app_key", File: file}},
			Configs: []*swarm.ConfigReference{{ConfigID: "cfg-old", ConfigName: "old_conf", File: &swarm.ConfigReferenceFileTarget{Name: "/etc/old", UID: "0", GID: "0", Mode: 0o444}}},
		}},
	}}
	r := runCLI(t, f.host, "", "service", "update", "-d", "--secret-add", "source=db_pw,target=app_key", "--secret-rm", "app_key",
		"--config-rm", "old_conf", "--config-add", "src=nginx_conf,target=/etc/old,mode=0440", "web")
	if r.code != 0 || r.stdout != "web\n" {
		t.Fatalf("update: %+v", r)
	}
	var spec swarm.ServiceSpec
	json.Unmarshal(f.body("POST /services/webid/update"), &spec)
	cs := spec.TaskTemplate.ContainerSpec
	sameJSON(t, []byte(mustJSON(cs.Secrets)), `[{"File": {"Name": "app_key", "UID": "0", "GID": "0", "Mode": 292}, "SecretID": "sec-db", "SecretName": "db_pw"}]`)
	sameJSON(t, []byte(mustJSON(cs.Configs)), `[{"File": {"Name": "/etc/old", "UID": "0", "GID": "0", "Mode": 288}, "ConfigID": "cfg-nginx", "ConfigName": "nginx_conf"}]`)

	// Adding a second file at a target in use is refused; nothing is written.
	before := len(f.requests())
	r = runCLI(t, f.host, "", "service", "update", "-d", "--secret-add", "app_key", "web")
	if r.code != 1 || r.stderr != "invalid service specification: duplicate secret target for app_key not allowed\n" {
		t.Fatalf("duplicate: %+v", r)
	}
	for _, req := range f.requests()[before:] {
		if strings.HasPrefix(req, "POST") || strings.HasPrefix(req, "GET /secrets") {
			t.Errorf("refused update sent %s", req)
		}
	}
	before = len(f.requests())
	r = runCLI(t, f.host, "", "service", "update", "-d", "--secret-add", "nosuch", "web")
	if r.code != 1 || r.stderr != "secret not found: nosuch\n" {
		t.Fatalf("missing secret: %+v", r)
	}
	for _, req := range f.requests()[before:] {
		if strings.HasPrefix(req, "POST") {
			t.Errorf("refused update sent %s", req)
		}
	}
}

// TestServicePrettySecrets: service inspect --pretty lists the configs and
// secrets as docker's template does, after the container spec.
func TestServicePrettySecrets(t *testing.T) {
	svc := swarm.Service{ID: "webid", Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web"},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest",
			Secrets: []*swarm.SecretReference{{SecretName: "db_pw", File: &swarm.SecretReferenceFileTarget{Name: "/etc/db"}}},
			Configs: []*swarm.ConfigReference{{ConfigName: "nginx", File: &swarm.ConfigReferenceFileTarget{Name: "nginx"}}},
		}},
	}}
	var b strings.Builder
	printServicePretty(&b, svc)
	want := " Image:\t\tbusybox:latest\nConfigs:\n Target:\tnginx\n  Source:\tnginx\nSecrets:\n Target:\t/etc/db\n  Source:\tdb_pw\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("pretty:\n%s\nlacks:\n%s", b.String(), want)
	}
	svc.Spec.TaskTemplate.ContainerSpec.Secrets = nil
	svc.Spec.TaskTemplate.ContainerSpec.Configs = nil
	b.Reset()
	printServicePretty(&b, svc)
	if strings.Contains(b.String(), "Secrets:") || strings.Contains(b.String(), "Configs:") {
		t.Errorf("pretty without any:\n%s", b.String())
	}
}

// TestServicePrettyLayout: the lines docker 28's template prints for a
// service inspected with insertDefaults, character for character.
func TestServicePrettyLayout(t *testing.T) {
	uc := &swarm.UpdateConfig{Parallelism: 1, FailureAction: "pause", Monitor: 5 * time.Second, Order: "stop-first"}
	init := false
	svc := swarm.Service{ID: "x1", Spec: swarm.ServiceSpec{
		Annotations:    swarm.Annotations{Name: "s3"},
		UpdateConfig:   uc,
		RollbackConfig: uc,
		TaskTemplate:   swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest", Args: []string{"sleep", "3600"}, Init: &init}},
	}}
	var b strings.Builder
	printServicePretty(&b, svc)
	for _, want := range []string{
		"\nID:\t\tx1\n",
		"UpdateConfig:\n Parallelism:\t1\n On failure:\tpause\n Monitoring Period: 5s\n Max failure ratio: 0\n Update order:      stop-first\n",
		"RollbackConfig:\n Parallelism:\t1\n On failure:\tpause\n Monitoring Period: 5s\n Max failure ratio: 0\n Rollback order:    stop-first\n",
		"ContainerSpec:\n Image:\t\tbusybox:latest\n Args:\t\tsleep 3600 \n Init:\t\tfalse\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("pretty:\n%q\nlacks\n%q", b.String(), want)
		}
	}
	if !strings.HasPrefix(b.String(), "\n") || strings.Contains(b.String(), "RestartPolicy") {
		t.Errorf("pretty:\n%q", b.String())
	}
}
