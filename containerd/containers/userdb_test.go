package containers

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustUserDB(t *testing.T, rootfs string) *userDB {
	t.Helper()
	db, err := readUserDB(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestUserDBRefusesHugeFiles: an image's /etc/passwd or /etc/group of
// gigabytes (a layer of a few MB of zeros unpacks to that) is refused at
// start, not read into the daemon's memory, where the cache would keep it.
// Before the limit, readUserDB read the whole file.
func TestUserDBRefusesHugeFiles(t *testing.T) {
	for _, name := range []string{"passwd", "group"} {
		rootfs := t.TempDir()
		if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "etc", name), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readUserDB(rootfs); err != nil {
			t.Fatalf("%s of one line: %v", name, err)
		}
		// Sparse: no disk space, the size a hostile layer would unpack to.
		if err := os.Truncate(filepath.Join(rootfs, "etc", name), 1<<30); err != nil {
			t.Fatal(err)
		}
		_, err := readUserDB(rootfs)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "/etc/"+name+" is larger than 4 MiB") {
			t.Fatalf("%s of 1 GiB: %v", name, err)
		}
	}
}

// TestUserDBCacheKeepsSmallOnes: a database above userDBCacheable is read
// at every start instead of being kept.
func TestUserDBCacheKeepsSmallOnes(t *testing.T) {
	var c userDBCache
	small := &userDB{passwd: []byte("root:x:0:0::/root:/bin/sh\n")}
	big := &userDB{passwd: make([]byte, userDBCacheable), group: []byte("x")}
	c.put([]string{"a", "b"}, small)
	c.put([]string{"c"}, big)
	if got := c.get([]string{"a", "b"}); got != small {
		t.Errorf("small database: %v", got)
	}
	if got := c.get([]string{"c"}); got != nil {
		t.Errorf("a database of %d bytes was kept", len(got.passwd)+len(got.group))
	}
	if got := c.get([]string{"a"}); got != nil {
		t.Errorf("another layer stack's: %v", got)
	}
}
