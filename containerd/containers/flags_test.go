package containers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/containerd/oci"
)

func TestMergeEnvRemovesBareNames(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1", "B=2"}, []string{"A", "C=3", "B=4", "NOPE", "C"})
	if want := []string{"PATH=/bin", "B=4"}; !slices.Equal(got, want) {
		t.Fatalf("mergeEnv: %q, want %q", got, want)
	}
}

func TestParseExtraHost(t *testing.T) {
	for in, want := range map[string]string{
		"db:10.0.0.1": "db 10.0.0.1", "v6:::1": "v6 ::1", "v6=[fd00::2]": "v6 fd00::2", "gw:host-gateway": "gw host-gateway",
		"nocolon": "", "a:1.2.3": "", ":1.2.3.4": "", "a b:1.2.3.4": "",
	} {
		name, ip, err := parseExtraHost(in)
		got := name + " " + ip
		if err != nil {
			got = ""
		}
		if got != want {
			t.Errorf("parseExtraHost(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

func TestResolvConf(t *testing.T) {
	f := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(f, []byte("# host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch a.example\noptions edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := hostResolvConf
	hostResolvConf = f
	defer func() { hostResolvConf = old }()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{NetworkMode: "bridge"}, "# host\nnameserver 10.0.0.2\nsearch a.example\noptions edns0\n"},
		{Config{NetworkMode: "host"}, "# host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch a.example\noptions edns0\n"},
		{Config{DNS: []string{"192.0.2.1"}, DNSSearch: []string{"."}, DNSOptions: []string{"ndots:1"}}, "# host\nnameserver 192.0.2.1\noptions ndots:1\n"},
	} {
		b, err := resolvConf(c.cfg)
		if err != nil || string(b) != c.want {
			t.Errorf("resolvConf(%+v) = %q (%v), want %q", c.cfg, b, err, c.want)
		}
	}
	if err := os.WriteFile(f, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := resolvConf(Config{}); string(b) != "nameserver 8.8.8.8\nnameserver 8.8.4.4\n" {
		t.Errorf("only a loopback nameserver on the host: %q", b)
	}
}

func TestCapabilities(t *testing.T) {
	has := func(caps []string, c string) bool { return slices.Contains(caps, c) }
	got, err := capabilities([]string{"net_admin", "CAP_SYS_TIME"}, []string{"chown", "NET_ADMIN"})
	if err != nil || !has(got, "CAP_NET_ADMIN") || !has(got, "CAP_SYS_TIME") || has(got, "CAP_CHOWN") || len(got) != len(oci.DefaultCapabilities)+1 {
		t.Fatalf("add net_admin, sys_time, drop chown, net_admin: %v %v", got, err)
	}
	if got, _ := capabilities([]string{"chown"}, []string{"all"}); !slices.Equal(got, []string{"CAP_CHOWN"}) {
		t.Fatalf("drop ALL add chown: %v", got)
	}
	if got, _ := capabilities([]string{"ALL"}, []string{"sys_admin"}); has(got, "CAP_SYS_ADMIN") || !has(got, "CAP_SYS_MODULE") {
		t.Fatalf("add ALL drop sys_admin: %v", got)
	}
	if _, err := capabilities([]string{"bogus"}, nil); err == nil || !strings.Contains(err.Error(), `unknown capability: "CAP_BOGUS"`) {
		t.Fatalf("unknown capability: %v", err)
	}
}
