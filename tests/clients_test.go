package tests

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// Real Docker clients are the judge of compatibility: the docker CLI and
// docker-py drive the daemon in the tests of every feature they cover.

// dockerBin is the docker CLI on these machines.
const dockerBin = "/usr/local/bin/docker"

// dockerCLI is the real docker client driving d. The machines the tests
// run on have it: its absence fails the test rather than skipping it, so
// a compatibility check never silently stops being run.
func dockerCLI(t *testing.T, d *harness.Daemon) func(args ...string) harness.Result {
	t.Helper()
	if _, err := os.Stat(dockerBin); err != nil {
		t.Fatalf("no docker CLI at %s: the compatibility tests need it", dockerBin)
	}
	return (&harness.Daemon{Bin: dockerBin, Socket: d.Socket}).Run
}

// dockerPy runs a python3 script with docker-py's client as `c`, connected
// to d (the API version negotiated), and returns its output.
func dockerPy(t *testing.T, d *harness.Daemon, script string) string {
	t.Helper()
	return dockerPyAt(t, d, "", script)
}

// dockerPyAt is dockerPy with the client pinned to API version (""
// negotiates); json and time are imported for the script.
func dockerPyAt(t *testing.T, d *harness.Daemon, version, script string) string {
	t.Helper()
	py := dockerPyPython(t)
	pin := ""
	if version != "" {
		pin = ", version='" + version + "'"
	}
	prog := "import docker, json, time\nc = docker.DockerClient(base_url='unix://" + d.Socket + "'" + pin + ")\n" + script
	out, err := exec.Command(py, "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("docker-py: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// dockerPyPython is the first python3 that imports docker-py: the one on
// PATH, else Debian's (make deps installs python3-docker). None fails the
// test: a missing client must not turn its checks into skips.
func dockerPyPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import docker").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with docker-py (make deps installs python3-docker)")
	return ""
}
