package daemon

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-project/shoal/manager"
)

func TestAdvertiseFor(t *testing.T) {
	for _, c := range []struct {
		given, listen, remote, want string
		bad                         bool
	}{
		{given: "198.18.0.1", listen: "0.0.0.0:2377", want: "198.18.0.1:2377"},
		{given: "198.18.0.1:4000", listen: "0.0.0.0:2377", want: "198.18.0.1:4000"},
		{given: "198.18.0.1", listen: "0.0.0.0:5000", want: "198.18.0.1:5000"},
		{listen: "127.0.0.1:2377", want: "127.0.0.1:2377"},
		{listen: "0.0.0.0:2377", remote: "127.0.0.1:2377", want: "127.0.0.1:2377"},
		{given: "lo", listen: "0.0.0.0:2377", want: "127.0.0.1:2377"},
		{given: "not-an-interface", listen: "0.0.0.0:2377", bad: true},
		{given: "1.2.3.4", listen: "nonsense", bad: true},
	} {
		got, err := advertiseFor(c.given, c.listen, c.remote)
		if c.bad {
			if err == nil {
				t.Errorf("advertiseFor(%q, %q, %q) = %q, want an error", c.given, c.listen, c.remote, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("advertiseFor(%q, %q, %q) = %q, %v; want %q", c.given, c.listen, c.remote, got, err, c.want)
		}
	}
}

func TestNormalizeListen(t *testing.T) {
	for in, want := range map[string]string{"": "0.0.0.0:2377", "198.18.0.1": "198.18.0.1:2377", "0.0.0.0:4000": "0.0.0.0:4000"} {
		if got := normalizeListen(in); got != want {
			t.Errorf("normalizeListen(%q) = %q, want %q", in, got, want)
		}
	}
}

// The state survives a round trip through disk, the key stays private, and
// a node without a state file is in no swarm. A manager's key is sealed
// with its data key: the file holds no key in the clear, and only that
// data key opens it.
func TestSwarmFilesRoundTrip(t *testing.T) {
	f := swarmFiles{dir: filepath.Join(t.TempDir(), "swarm")}
	if st, err := f.loadState(); st != nil || err != nil {
		t.Fatalf("empty dir: %v %v", st, err)
	}
	fd, err := manager.Found("198.18.0.1:2377", nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := &swarmState{NodeID: fd.Node.GetId(), Role: roleManager, ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "198.18.0.1:2377", Managers: []string{"198.18.0.2:2377"}}
	saved, err := newIdentity(fd.Root, fd.Cert, fd.Key)
	if err != nil {
		t.Fatal(err)
	}
	dek := bytes.Repeat([]byte{7}, 32)
	if err := f.saveIdentity(saved, dek); err != nil {
		t.Fatal(err)
	}
	if err := f.save(want); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(f.pair()); err != nil || bytes.Contains(b, []byte("PRIVATE KEY-----")) && !bytes.Contains(b, []byte(sealedKeyType)) {
		t.Fatalf("sealed pair holds a key in the clear (%v):\n%s", err, b)
	}
	if _, err := f.loadIdentity(nil); !errors.Is(err, errKeySealed) {
		t.Fatalf("sealed key loaded without the data key: %v", err)
	}
	if _, err := f.loadIdentity(bytes.Repeat([]byte{8}, 32)); err == nil {
		t.Fatal("sealed key opened with another data key")
	}
	st, err := f.loadState()
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.loadIdentity(dek)
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeID != want.NodeID || st.Role != want.Role || st.AdvertiseAddr != want.AdvertiseAddr || len(st.Managers) != 1 {
		t.Fatalf("state %+v, want %+v", st, want)
	}
	cert, key := id.sec.Credentials()
	if !key.Equal(fd.Key) || string(cert) != string(fd.Cert) || !id.sec.Root().Cert.Equal(fd.Root.Cert) || id.sec.Root().Key != nil {
		t.Fatal("identity changed on disk (or the root key was written)")
	}
	fi, err := os.Stat(f.pair())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	// A corrupt state file is an error, not a silent fresh node.
	if err := os.WriteFile(f.state(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.loadState(); err == nil {
		t.Fatal("corrupt state loaded")
	}
}
