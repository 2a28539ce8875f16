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

// dockerCLI is the real docker client driving d, or a skip when it is not
// installed.
func dockerCLI(t *testing.T, d *harness.Daemon) func(args ...string) harness.Result {
	t.Helper()
	if _, err := os.Stat(dockerBin); err != nil {
		t.Skip("no docker CLI at " + dockerBin)
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
	if exec.Command("python3", "-c", "import docker").Run() != nil {
		t.Skip("no docker-py (apt-get install -y python3-docker)")
	}
	pin := ""
	if version != "" {
		pin = ", version='" + version + "'"
	}
	prog := "import docker, json, time\nc = docker.DockerClient(base_url='unix://" + d.Socket + "'" + pin + ")\n" + script
	out, err := exec.Command("python3", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("docker-py: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}
