package worker

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/shoal-project/shoal/api"
)

func secretOf(id, name, data string) *api.Secret {
	return &api.Secret{Id: id, Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: name}, Data: []byte(data)}}
}

// TestSecretsKeptWhileReferred: a secret stays while some assigned task
// refers to it and goes with the last one.
func TestSecretsKeptWhileReferred(t *testing.T) {
	s := NewSecrets()
	pw := secretOf("s1", "pw", "hunter2")
	s.set("t1", []*api.Secret{pw}, nil)
	s.set("t2", []*api.Secret{pw}, []*api.Config{{Id: "c1"}})
	s.set("t2", []*api.Secret{pw}, []*api.Config{{Id: "c1"}}) // resent: no double count
	s.drop("t1")
	if s.secret("s1") == nil || s.config("c1") == nil {
		t.Fatal("dropped while task t2 still refers to them")
	}
	s.set("t2", nil, nil) // t2's new spec uses none
	if s.secret("s1") != nil || s.config("c1") != nil {
		t.Fatal("kept with no task referring to them")
	}
	if len(s.refs)+len(s.byTask) != 0 {
		t.Fatalf("bookkeeping left: %v %v", s.refs, s.byTask)
	}
}

// TestTaskFiles: each secret and config becomes a file with the
// reference's owner and mode, shown read-only where Docker shows it; a
// reference the node did not receive fails the task and leaves nothing.
func TestTaskFiles(t *testing.T) {
	root := t.TempDir()
	s := NewSecrets()
	s.set("t1", []*api.Secret{secretOf("s1", "pw", "hunter2"), secretOf("s2", "key", "k")},
		[]*api.Config{{Id: "c1", Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "app.conf"}, Data: []byte("port=80")}}})
	task := &api.Task{Id: "t1", Spec: &api.TaskSpec{Container: &api.ContainerSpec{
		Secrets: []*api.SecretReference{
			{SecretId: "s1", SecretName: "pw", File: &api.FileTarget{Name: "pw", Uid: "1000", Gid: "1001", Mode: 0o400}},
			{SecretId: "s2", SecretName: "key", File: &api.FileTarget{Name: "/etc/key", Mode: 0o440}},
		},
		Configs: []*api.ConfigReference{{ConfigId: "c1", ConfigName: "app.conf"}},
	}}}
	binds, err := TaskFiles(root, task, s)
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{}
	for _, b := range binds {
		f := strings.Split(b, ":")
		if len(f) != 3 || f[2] != "ro" {
			t.Fatalf("bind %q is not a read-only bind", b)
		}
		targets[f[1]] = f[0]
	}
	check := func(target, data string, uid, gid uint32, mode os.FileMode) {
		t.Helper()
		src, ok := targets[target]
		if !ok {
			t.Fatalf("nothing at %s: %v", target, binds)
		}
		b, err := os.ReadFile(src)
		st, _ := os.Stat(src)
		sys := st.Sys().(*syscall.Stat_t)
		if err != nil || string(b) != data || sys.Uid != uid || sys.Gid != gid || st.Mode().Perm() != mode {
			t.Fatalf("%s: %q (%v), owner %d:%d, mode %v; want %q %d:%d %v", target, b, err, sys.Uid, sys.Gid, st.Mode().Perm(), data, uid, gid, mode)
		}
		if !strings.HasPrefix(src, SecretsDir(root, "t1")+"/") {
			t.Fatalf("%s comes from %s, outside the task's directory", target, src)
		}
	}
	check("/run/secrets/pw", "hunter2", 1000, 1001, 0o400)
	check("/etc/key", "k", 0, 0, 0o440)
	check("/app.conf", "port=80", 0, 0, 0o444)

	// Written again (a retried create): the same result, no leftovers.
	if _, err := TaskFiles(root, task, s); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(SecretsDir(root, "t1")); len(ents) != 3 {
		t.Fatalf("%d files after a second write, want 3", len(ents))
	}

	missing := &api.Task{Id: "t2", Spec: &api.TaskSpec{Container: &api.ContainerSpec{
		Secrets: []*api.SecretReference{{SecretId: "s1", SecretName: "pw"}, {SecretId: "nope", SecretName: "gone"}},
	}}}
	if _, err := TaskFiles(root, missing, s); err == nil || !strings.Contains(err.Error(), "secret gone (nope) was not sent to this node") {
		t.Fatalf("missing secret: %v", err)
	}
	if _, err := os.Stat(SecretsDir(root, "t2")); !os.IsNotExist(err) {
		t.Fatalf("a failed task left its directory: %v", err)
	}
	if _, err := TaskFiles("", task, s); err == nil {
		t.Fatal("no secrets root accepted")
	}
	ents, _ := os.ReadDir(root)
	if names := func() (n []string) {
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return
	}(); !slices.Equal(names, []string{"t1"}) {
		t.Fatalf("root holds %v", names)
	}
}
