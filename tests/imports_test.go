package tests

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/shoal-project/shoal"

// allowed lists, for each top-level part of the tree, which project packages it
// may import (DESIGN.md, "Layout"). A package may always import packages below
// its own top-level directory.
var allowed = map[string][]string{
	"api":        {},
	"raftstore":  {"api"},
	"scheduler":  {"api"},
	"manager":    {"api", "raftstore", "scheduler"},
	"worker":     {"api", "containerd", "overlaynet"},
	"containerd": {},
	"overlaynet": {"api"},
	"daemon":     {"api", "raftstore", "scheduler", "manager", "worker", "containerd", "overlaynet"},
	"cli":        {},
	// cmd/shoal: cli and daemon; cmd/shoal-shim, the shim and init binary
	// that shoal embeds: the engine's runtime and shim only.
	"cmd":   {"cli", "daemon", "containerd"},
	"tests": {},
}

func topOf(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return rel
}

// TestImportRules enforces DESIGN.md's import table on every package, its tests included.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`,
		module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg, top := f[0], topOf(f[0])
		rules, known := allowed[top]
		if !known {
			t.Errorf("%s: top-level directory %q is not in DESIGN.md's layout", pkg, top)
			continue
		}
		checked++
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module+"/") || topOf(imp) == top {
				continue
			}
			ok := false
			for _, a := range rules {
				ok = ok || topOf(imp) == a
			}
			if !ok {
				t.Errorf("%s imports %s: %s may import only %v", pkg, imp, top, rules)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no packages checked")
	}
}

// TestNoGenericPackageNames refuses util/common/helpers packages.
func TestNoGenericPackageNames(t *testing.T) {
	out, err := exec.Command("go", "list", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		last := pkg[strings.LastIndexByte(pkg, '/')+1:]
		switch last {
		case "util", "utils", "common", "helpers", "misc":
			t.Errorf("%s: name a package after what it provides", pkg)
		}
	}
}

// TestClientLeavesOut: the client binary (every CLI command starts it)
// links none of the libraries it was cut loose from for its start's sake:
// moby's client (session 17) and net/http with crypto/tls (session 26: the
// API client speaks HTTP/1.1 itself, cli/apiclient/wire.go).
func TestClientLeavesOut(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "shoalclient", module+"/cmd/shoal").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	if !deps[module+"/cli/apiclient"] {
		t.Fatalf("the client's dependencies lack cli/apiclient: not the client's list\n%s", out)
	}
	for _, p := range []string{"net/http", "crypto/tls", "github.com/moby/moby/client"} {
		if deps[p] {
			t.Errorf("the client binary links %s", p)
		}
	}
}
