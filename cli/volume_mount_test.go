package cli

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/mount"
)

func TestParseMount(t *testing.T) {
	m, err := parseMount("type=volume,source=data,target=/d,readonly,volume-nocopy,volume-label=a=b,volume-opt=type=tmpfs,volume-opt=o=size=1m")
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != mount.TypeVolume || m.Source != "data" || m.Target != "/d" || !m.ReadOnly ||
		m.VolumeOptions == nil || !m.VolumeOptions.NoCopy || m.VolumeOptions.Labels["a"] != "b" ||
		m.VolumeOptions.DriverConfig.Options["type"] != "tmpfs" || m.VolumeOptions.DriverConfig.Options["o"] != "size=1m" {
		t.Fatalf("volume mount: %+v", m)
	}
	m, err = parseMount("type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=1770")
	if err != nil || m.TmpfsOptions == nil || m.TmpfsOptions.SizeBytes != 2<<20 || m.TmpfsOptions.Mode != 0o1770 {
		t.Fatalf("tmpfs mount: %+v %v", m, err)
	}
	m, err = parseMount(`type=bind,src=/a,dst=/b,bind-propagation=rslave,ro=false`)
	if err != nil || m.BindOptions == nil || m.BindOptions.Propagation != mount.PropagationRSlave || m.ReadOnly {
		t.Fatalf("bind mount: %+v %v", m, err)
	}
	// No type is a volume, as docker's default.
	if m, err := parseMount("dst=/x"); err != nil || m.Type != mount.TypeVolume || m.Source != "" {
		t.Fatalf("default type: %+v %v", m, err)
	}
	for spec, want := range map[string]string{
		"type=volume":                           "target is required",
		"type=volume,dst=rel":                   "must be an absolute path",
		"type=bind,dst=/x":                      "source is required",
		"type=bind,src=rel,dst=/x":              "must be an absolute path",
		"type=tmpfs,src=x,dst=/x":               "source is not allowed",
		"type=npipe,dst=/x":                     "not supported",
		"type=volume,src=../x,dst=/x":           "invalid characters",
		"type=volume,dst=/x,tmpfs-size=1m":      "cannot mix 'tmpfs-*'",
		"type=tmpfs,dst=/x,volume-nocopy":       "cannot mix 'volume-*'",
		"type=volume,dst=/x,bind-propagation=x": "invalid bind-propagation",
		"type=tmpfs,dst=/x,tmpfs-size=-1":       "invalid tmpfs-size",
		"type=tmpfs,dst=/x,tmpfs-mode=999":      "invalid tmpfs-mode",
		"type=volume,dst=/x,ro=maybe":           "invalid value for ro",
		"type=volume,dst=/x,colour=red":         "unexpected key 'colour'",
		"type=volume,dst=/x,bogus":              "must be a key=value pair",
		"type=volume,dst=/x,volume-opt=novalue": "not KEY=VALUE",
		`type=volume,"dst=/x`:                   "invalid argument",
	} {
		_, err := parseMount(spec)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("parseMount(%q) = %v, want one line with %q", spec, err, want)
		}
	}
}

func TestParseTmpfsAndVolumesFrom(t *testing.T) {
	got, err := parseTmpfs([]string{"/a", "/b:size=1m,mode=1777"})
	if err != nil || got["/a"] != "" || got["/b"] != "size=1m,mode=1777" {
		t.Fatalf("parseTmpfs: %v %v", got, err)
	}
	for _, bad := range [][]string{{"rel"}, {"/a", "/a:size=1m"}} {
		if _, err := parseTmpfs(bad); err == nil {
			t.Errorf("parseTmpfs(%q) accepted", bad)
		}
	}
	if err := checkVolumesFrom([]string{"c1", "c2:ro", "c3:rw"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{":ro", "c:rx", "c:ro:z"} {
		if err := checkVolumesFrom([]string{bad}); err == nil {
			t.Errorf("checkVolumesFrom(%q) accepted", bad)
		}
	}
	if _, err := parseDriverOpts([]string{"type"}); err == nil {
		t.Error("--opt without = accepted")
	}
}

func TestUpdateServiceMounts(t *testing.T) {
	cur := []mount.Mount{{Type: mount.TypeVolume, Source: "a", Target: "/a"}, {Type: mount.TypeTmpfs, Target: "/t"}}
	got, err := updateServiceMounts(cur, []string{"type=volume,src=b,dst=/a"}, []string{"/t"})
	if err != nil || len(got) != 1 || got[0].Source != "b" {
		t.Fatalf("updateServiceMounts: %+v %v", got, err)
	}
	if _, err := parseServiceMounts([]string{"dst=/x", "type=tmpfs,dst=/x"}); err == nil {
		t.Fatal("two mounts at one target accepted")
	}
}
