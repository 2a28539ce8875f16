package cli

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/network"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string
	}{
		{"64m", 64 << 20, ""},
		{"64M", 64 << 20, ""},
		{"1g", 1 << 30, ""},
		{"512k", 512 << 10, ""},
		{"512kb", 512 << 10, ""},
		{"2MiB", 2 << 20, ""},
		{"100", 100, ""},
		{"100b", 100, ""},
		{"1.5k", 1536, ""},
		{"64x", 0, "invalid size: '64x'"},
		{"", 0, "invalid size: ''"},
		{"m", 0, "invalid size: 'm'"},
		{"-1", 0, "invalid size: '-1'"},
		{"1.2.3m", 0, "invalid size: '1.2.3m'"},
		{"1e30", 0, "invalid size: '1e30'"},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("parseSize(%q) = %d, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string
	}{
		{"0.5", 500000000, ""},
		{"1", 1000000000, ""},
		{"1.25", 1250000000, ""},
		{"0.000000001", 1, ""},
		{"0.0000000001", 0, "value is too precise"},
		{"abc", 0, "failed to parse abc as a rational number"},
		{"-1", 0, "must not be negative"},
		{"", 0, "failed to parse"},
		{"99999999999999999999", 0, "too large"},
	}
	for _, c := range cases {
		got, err := parseCPUs(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseCPUs(%q) = %d, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseCPUs(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestParsePortSpec(t *testing.T) {
	type m struct {
		port, ip, host string
	}
	cases := []struct {
		in   string
		want []m
		err  string
	}{
		{"80", []m{{"80/tcp", "", ""}}, ""},
		{"8080:80", []m{{"80/tcp", "", "8080"}}, ""},
		{"8080:80/udp", []m{{"80/udp", "", "8080"}}, ""},
		{"8080:80/UDP", []m{{"80/udp", "", "8080"}}, ""},
		{"127.0.0.1:8080:80", []m{{"80/tcp", "127.0.0.1", "8080"}}, ""},
		{"127.0.0.1::80", []m{{"80/tcp", "127.0.0.1", ""}}, ""},
		{"[::1]:8080:80", []m{{"80/tcp", "::1", "8080"}}, ""},
		{"::1:8080:80", []m{{"80/tcp", "::1", "8080"}}, ""},
		{"8000-8001:80-81", []m{{"80/tcp", "", "8000"}, {"81/tcp", "", "8001"}}, ""},
		{"8000-8010:80", []m{{"80/tcp", "", "8000-8010"}}, ""},
		{"80-81", []m{{"80/tcp", "", ""}, {"81/tcp", "", ""}}, ""},
		{"0:80", []m{{"80/tcp", "", "0"}}, ""},
		{"80/sctp", []m{{"80/sctp", "", ""}}, ""},
		{"", nil, "no port specified"},
		{"8080:", nil, "no port specified"},
		{"0", nil, "invalid containerPort: 0"},
		{"65536", nil, "invalid containerPort"},
		{"abc", nil, "invalid containerPort"},
		{"8080:80/icmp", nil, "invalid proto: icmp"},
		{"x:80", nil, "invalid hostPort: x"},
		{"1.2.3:80:80", nil, "invalid IP address"},
		{"8000-8001:80-82", nil, "invalid ranges"},
		{"90-80", nil, "invalid containerPort"},
		{"+80", nil, "invalid containerPort"},
		{"fe80::1%eth0:80:80", nil, "invalid IP address"},
	}
	for _, c := range cases {
		got, err := parsePortSpec(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalidPort) {
				t.Errorf("parsePortSpec(%q) = %v, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePortSpec(%q): %v", c.in, err)
			continue
		}
		var gotM []m
		for _, g := range got {
			ip := ""
			if g.Binding.HostIP.IsValid() {
				ip = g.Binding.HostIP.String()
			}
			gotM = append(gotM, m{g.Port.String(), ip, g.Binding.HostPort})
		}
		if !reflect.DeepEqual(gotM, c.want) {
			t.Errorf("parsePortSpec(%q) = %v, want %v", c.in, gotM, c.want)
		}
	}
}

func TestParsePublishMergesBindings(t *testing.T) {
	exposed, bindings, err := parsePublish([]string{"8080:80", "127.0.0.1:9090:80", "53/udp"})
	if err != nil {
		t.Fatal(err)
	}
	p80 := network.MustParsePort("80/tcp")
	if _, ok := exposed[p80]; !ok || len(exposed) != 2 {
		t.Fatalf("exposed = %v", exposed)
	}
	want := []network.PortBinding{{HostPort: "8080"}, {HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "9090"}}
	if !reflect.DeepEqual(bindings[p80], want) {
		t.Fatalf("bindings[80/tcp] = %v, want %v", bindings[p80], want)
	}
}

func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"80", "8080:80/udp", "[::1]:1-2:3-4/sctp", "1.2.3.4::80", "::::", "0-65535:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		maps, err := parsePortSpec(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPort) {
				t.Fatalf("error %v does not wrap ErrInvalidPort", err)
			}
			return
		}
		if len(maps) == 0 {
			t.Fatalf("%q: no mappings and no error", s)
		}
		for _, m := range maps {
			if !m.Port.IsValid() || m.Port.Num() == 0 {
				t.Fatalf("%q: invalid port %v", s, m.Port)
			}
			// What we send must parse back on the daemon's side.
			if _, err := network.ParsePort(m.Port.String()); err != nil {
				t.Fatalf("%q: port %v does not round-trip: %v", s, m.Port, err)
			}
			if m.Binding.HostPort != "" {
				if _, _, err := parsePortRange(m.Binding.HostPort, 0); err != nil {
					t.Fatalf("%q: host port %q does not parse: %v", s, m.Binding.HostPort, err)
				}
			}
		}
	})
}

func TestParseEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOME": "/root", "EMPTY": ""}[k]
		return v, ok
	}
	got, err := parseEnvList([]string{"A=1", "B=", "HOME", "EMPTY", "UNSET", "C=x=y"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=", "HOME=/root", "EMPTY=", "C=x=y"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseEnvList = %q, want %q", got, want)
	}
	for _, bad := range []string{"=x", "", "A B"} {
		if _, err := parseEnvList([]string{bad}, lookup); !errors.Is(err, ErrInvalidEnv) {
			t.Errorf("parseEnvList(%q) error = %v, want ErrInvalidEnv", bad, err)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	lookup := func(k string) (string, bool) { return "from-env", k == "FROMENV" }
	content := "\uFEFF# comment\n\nA=1\n  B=two words\nFROMENV\nMISSING\n"
	got, err := parseEnvFileContent("f.env", content, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words", "FROMENV=from-env"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := parseEnvFileContent("f.env", "BAD NAME=1\n", lookup); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("whitespace in name: %v", err)
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels([]string{"a=1", "b", "c=x=y"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, map[string]string{"a": "1", "b": "", "c": "x=y"}) {
		t.Fatalf("got %v", got)
	}
	if _, err := parseLabels([]string{"=v"}); err == nil {
		t.Fatal("empty label name accepted")
	}
}

func TestParseVolume(t *testing.T) {
	cases := []struct {
		in, bind, target string
		err              string
	}{
		{"/data", "", "/data", ""},
		{"/host:/ctr", "/host:/ctr", "/ctr", ""},
		{"/host/:/ctr/", "/host:/ctr", "/ctr", ""},
		{"/host:/ctr:ro", "/host:/ctr:ro", "/ctr", ""},
		{"/host:/ctr:rw,z", "/host:/ctr:rw,z", "/ctr", ""},
		{"/host:/ctr:ro,rshared", "/host:/ctr:ro,rshared", "/ctr", ""},
		{"vol1:/ctr", "vol1:/ctr", "/ctr", ""},
		{"/host:ctr", "", "", "container path must be absolute"},
		{"relative", "", "", "container path must be absolute"},
		{"/host:/ctr:rx", "", "", "invalid mode: rx"},
		{"/host:/ctr:ro,rw", "", "", "conflicts"},
		{"/a:/b:ro:x", "", "", "too many colons"},
		{":/ctr", "", "", "empty source"},
		{"/host:", "", "", "empty container path"},
		{"bad$name:/ctr", "", "", "invalid characters"},
	}
	for _, c := range cases {
		got, err := parseVolume(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalidVolume) {
				t.Errorf("parseVolume(%q) = %+v, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got.Bind() != c.bind || got.Target != c.target {
			t.Errorf("parseVolume(%q) = bind %q target %q, %v; want %q %q", c.in, got.Bind(), got.Target, err, c.bind, c.target)
		}
	}
	// A "./" source becomes absolute, as docker does.
	v, err := parseVolume("./data:/data")
	if err != nil || !strings.HasPrefix(v.Source, "/") || !strings.HasSuffix(v.Source, "/data") {
		t.Fatalf("relative source: %+v %v", v, err)
	}
}

func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/a:/b:ro", "/data", "vol:/x:z", "./x:/y", "::", "/a:/b:ro,rw,z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseVolume(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidVolume) {
				t.Fatalf("error %v does not wrap ErrInvalidVolume", err)
			}
			return
		}
		if !strings.HasPrefix(v.Target, "/") {
			t.Fatalf("%q: target %q not absolute", s, v.Target)
		}
		if b := v.Bind(); b != "" {
			// The bind must parse again to the same thing: the daemon
			// splits it on colons exactly as we do.
			again, err := parseVolume(b)
			if err != nil || again != v {
				t.Fatalf("%q: bind %q re-parses to %+v, %v", s, b, again, err)
			}
		}
	})
}

func TestParseRestartPolicy(t *testing.T) {
	for _, ok := range []string{"", "no", "always", "unless-stopped", "on-failure", "on-failure:3"} {
		if _, err := parseRestartPolicy(ok); err != nil {
			t.Errorf("parseRestartPolicy(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"sometimes", "always:3", "on-failure:x", "on-failure:-1"} {
		if _, err := parseRestartPolicy(bad); err == nil {
			t.Errorf("parseRestartPolicy(%q) accepted", bad)
		}
	}
	p, _ := parseRestartPolicy("on-failure:5")
	if p.MaximumRetryCount != 5 {
		t.Fatalf("retry count %d", p.MaximumRetryCount)
	}
}

func TestSplitCpArg(t *testing.T) {
	cases := []struct{ in, ctr, path string }{
		{"web:/etc/passwd", "web", "/etc/passwd"},
		{"/abs/path", "", "/abs/path"},
		{"relative", "", "relative"},
		{"./a:b", "", "./a:b"},
		{"web:rel", "web", "rel"},
		{"-", "", "-"},
	}
	for _, c := range cases {
		ctr, p := splitCpArg(c.in)
		if ctr != c.ctr || p != c.path {
			t.Errorf("splitCpArg(%q) = %q %q, want %q %q", c.in, ctr, p, c.ctr, c.path)
		}
	}
}
