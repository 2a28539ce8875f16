package containers

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/shoal-project/shoal/containerd/inroot"
)

// userDB is a container's /etc/passwd and /etc/group, read once for a
// start or an exec: the user, its groups, its HOME and the --group-add
// names are all looked up in them.
type userDB struct {
	passwd, group []byte
}

// userDBMax bounds each file: far above any real /etc/passwd, far below
// what a hostile image's layer of a few MB of zeros unpacks to.
const userDBMax = 4 << 20

// readUserDB reads the two files inside rootfs (symlinks resolved in it:
// a symlinked /etc/passwd cannot point at the host's); a file that cannot
// be read is empty, as if it had no entries, but one above userDBMax is
// refused.
func readUserDB(rootfs string) (*userDB, error) {
	db := &userDB{}
	for _, f := range []struct {
		name string
		to   *[]byte
	}{{"etc/passwd", &db.passwd}, {"etc/group", &db.group}} {
		b, err := inroot.ReadFileLimit(rootfs, f.name, userDBMax)
		if errors.Is(err, inroot.ErrTooLarge) {
			return nil, fmt.Errorf("%w: the container's /%s is larger than %d MiB", ErrInvalidArgument, f.name, userDBMax>>20)
		}
		*f.to = b
	}
	return db, nil
}

// passwdFile and groupFile are the files' contents; none without a db
// (the checks of a create).
func (db *userDB) passwdFile() []byte {
	if db == nil {
		return nil
	}
	return db.passwd
}

func (db *userDB) groupFile() []byte {
	if db == nil {
		return nil
	}
	return db.group
}

// userDBCache holds the user databases of image layer stacks, keyed by
// the stack's layer directories: a stack's files never change (layers are
// content-addressed and unpacked once), so a container that has written
// nothing yet has its image's. It saves each such start an overlay
// instance made only to read two files.
type userDBCache struct {
	mu sync.Mutex
	m  map[string]*userDB
}

// userDBCacheSize bounds the cache's entries, and userDBCacheable the
// size of one: a larger pair of files is read at every start instead of
// being kept. When full the cache starts again empty.
const (
	userDBCacheSize = 64
	userDBCacheable = 64 << 10
)

func (c *userDBCache) get(layers []string) *userDB {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[strings.Join(layers, ":")]
}

func (c *userDBCache) put(layers []string, db *userDB) {
	if len(db.passwd)+len(db.group) > userDBCacheable {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= userDBCacheSize {
		c.m = map[string]*userDB{}
	}
	c.m[strings.Join(layers, ":")] = db
}

// dirEmpty tells whether dir exists and holds nothing.
func dirEmpty(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return err == io.EOF
}
