// Package shimbin holds the small binary that runs as every container's
// shim and init (cmd/shoal-shim), embedded in shoal by `make build`, and
// gives the path to execute it by.
//
// It is embedded rather than shipped beside shoal so that shoal stays one
// file to install and the two can never come from different builds. It is
// executed from a sealed memfd copy, never from a file on disk: a container
// that reopens its init's /proc/PID/exe for writing (CVE-2019-5736) finds a
// file nobody can change. Without an embedded binary (shoal built by a
// plain `go build ./cmd/shoal`, which does not build it first) the path is
// that of shoal's own sealed view, which runs both roles too, more slowly.
package shimbin

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/shoal-project/shoal/containerd/runtime"
)

// Name is the embedded binary's file name under bin/ (make build writes it).
const Name = "shoal-shim"

//go:embed bin
var files embed.FS

var sealed struct {
	once sync.Once
	path string
	file *os.File // kept open for the life of the process
	err  error
}

// Embedded tells whether this binary carries the shim binary.
func Embedded() bool {
	_, err := fs.Stat(files, "bin/"+Name)
	return err == nil
}

// Sealed returns the path that executes the shim binary: the sealed copy
// of the embedded one, made on the first call, or else this process's own
// sealed binary (runtime.SealedSelf). The path is resolved by execve in the
// child before close-on-exec descriptors close.
func Sealed() (string, error) {
	sealed.once.Do(func() {
		// Opened, not read whole: no copy of it on the heap.
		src, err := files.Open("bin/" + Name)
		if err != nil {
			sealed.path, sealed.err = runtime.SealedSelf()
			return
		}
		defer src.Close()
		f, err := runtime.SealedCopy(Name, src)
		if err != nil {
			sealed.err = fmt.Errorf("embedded %s: %w", Name, err)
			return
		}
		sealed.file = f
		sealed.path = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	})
	return sealed.path, sealed.err
}
