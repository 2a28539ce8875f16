package daemon

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestDEKFile: a new data key is in the clear; sealed with an unlock key it
// is not on disk in the clear, does not open without the key or with a
// wrong one, and opens with the right one; the file records the cluster
// version its seal follows.
func TestDEKFile(t *testing.T) {
	f := swarmFiles{dir: t.TempDir()}
	keys, v, err := f.loadDEK(nil)
	dek := keys.dek
	if err != nil || len(dek) != 32 || v != 0 {
		t.Fatalf("new data key: %d bytes, version %d, %v", len(dek), v, err)
	}
	if locked, err := f.dekLocked(); locked || err != nil {
		t.Fatalf("a clear data key reads as locked: %v", err)
	}
	key, wrong := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old := bytes.Repeat([]byte{3}, 32)
	keys.old = [][]byte{old}
	if err := f.saveDEK(keys, key, 42); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(f.dek())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, dek) || bytes.Contains(raw, old) || strings.Contains(string(raw), `"dek"`) {
		t.Fatalf("sealed data key file holds the key: %s", raw)
	}
	if locked, err := f.dekLocked(); !locked || err != nil {
		t.Fatalf("a sealed data key reads as unlocked: %v", err)
	}
	if _, _, err := f.loadDEK(nil); !errors.Is(err, errSwarmLocked) {
		t.Fatalf("no key: %v, want the locked error", err)
	}
	if _, _, err := f.loadDEK(wrong); !errors.Is(err, errWrongUnlockKey) {
		t.Fatalf("wrong key: %v, want the invalid key error", err)
	}
	got, v, err := f.loadDEK(key)
	if err != nil || !bytes.Equal(got.dek, dek) || len(got.old) != 1 || !bytes.Equal(got.old[0], old) || v != 42 {
		t.Fatalf("right key: equal %v, old %d, version %d, %v", bytes.Equal(got.dek, dek), len(got.old), v, err)
	}
}

func TestUnlockKeyFormat(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s := formatUnlockKey(key)
	if !strings.HasPrefix(s, "SWMKEY-1-") {
		t.Fatalf("format: %q", s)
	}
	if got, err := parseUnlockKey(" " + s + "\n"); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("parse %q: %x, %v", s, got, err)
	}
	for _, bad := range []string{"", "SWMKEY-1-", "SWMKEY-2-" + s[9:], s[9:], "SWMKEY-1-!!!"} {
		if _, err := parseUnlockKey(bad); err == nil || !strings.Contains(err.Error(), "invalid unlock key") {
			t.Errorf("parse %q: %v, want invalid unlock key", bad, err)
		}
	}
}
