// Package runmain runs `shoal runtime run`, the OCI runtime command line's
// one-shot container start, from its init function, before the packages it
// does not import are initialized (package initmain of the runtime says how
// and why). Package ocicli cannot do it itself: cobra imports text/template,
// whose path sorts late, so ocicli's init runs only at the end of the
// binary's initialization.
//
// Only the plain forms are taken here, every other command line falls
// through to ocicli (cobra), which then handles it as always:
//
//	shoal runtime [--root DIR] run [--bundle DIR | -b DIR] [--pid-file FILE] [--no-pivot] ID
//
// with each flag also as --flag=VALUE and in any order around ID. The run
// itself is runtime.Runtime.Run, as in ocicli, and so are the exit status
// (the container's) and the one-line error.
package runmain

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shimbin"
)

func init() {
	if len(os.Args) < 3 || os.Args[1] != "runtime" {
		return
	}
	r, ok := parse(os.Args[2:])
	if !ok {
		return
	}
	os.Exit(r.run())
}

// runArgs is a parsed `runtime run` command line.
type runArgs struct {
	root, bundle, pidFile, id string
	noPivot                   bool
}

// parse accepts the forms in the package doc; anything else (another
// command, an unknown or repeated flag, a missing value) is not ok.
func parse(args []string) (runArgs, bool) {
	r := runArgs{root: runtime.DefaultRoot, bundle: "."}
	sawRun := false
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			switch {
			case !sawRun && a == "run":
				sawRun = true
			case sawRun && r.id == "":
				r.id = a
			default:
				return r, false
			}
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		if name == "-b" {
			name = "--bundle"
		}
		if seen[name] || (name != "--root" && !sawRun) {
			return r, false
		}
		seen[name] = true
		if name == "--no-pivot" {
			if hasVal {
				return r, false
			}
			r.noPivot = true
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return r, false
			}
			i++
			val = args[i]
		}
		switch name {
		case "--root":
			r.root = val
		case "--bundle":
			r.bundle = val
		case "--pid-file":
			r.pidFile = val
		default:
			return r, false
		}
	}
	return r, sawRun && r.id != ""
}

// run starts the container, waits for it and returns the exit status.
func (r runArgs) run() int {
	rt := runtime.New(r.root)
	rt.Self = shimbin.Sealed
	code, err := rt.Run(context.Background(), r.id, r.bundle, runtime.CreateOptions{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, PidFile: r.pidFile, NoPivot: r.noPivot})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoal runtime:", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	if code < 0 {
		return 1
	}
	return code
}
