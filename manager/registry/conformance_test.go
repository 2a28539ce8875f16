package registry

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/raftstore"
)

// TestConformance runs the OCI distribution-spec conformance suite (a
// conformance.test binary built by tests/registry-conformance/run.sh, named
// by REGISTRY_CONFORMANCE_BIN) against a Handler over a directory blob store,
// with pull, push, content discovery and content management enabled.
func TestConformance(t *testing.T) {
	bin := os.Getenv("REGISTRY_CONFORMANCE_BIN")
	if bin == "" {
		t.Skip("REGISTRY_CONFORMANCE_BIN is not set (tests/registry-conformance/run.sh sets it)")
	}
	dir := t.TempDir()
	// Tags in the raft store's FSM (applying its own proposals, no raft),
	// as the managers keep them.
	tags := RaftTagStore{Store: raftstore.NewMemoryStore(nil, nil)}
	h := New(Config{Blobs: &DirBlobStore{Dir: filepath.Join(dir, "blobs")}, Tags: tags, UploadDir: filepath.Join(dir, "uploads")})
	srv := httptest.NewServer(h)
	defer srv.Close()
	report := os.Getenv("REGISTRY_CONFORMANCE_REPORT")
	if report == "" {
		report = filepath.Join(dir, "report")
	}
	cmd := exec.Command(bin, "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"OCI_ROOT_URL="+srv.URL,
		"OCI_NAMESPACE=shoal/conformance",
		"OCI_CROSSMOUNT_NAMESPACE=shoal/other",
		"OCI_TEST_PULL=1", "OCI_TEST_PUSH=1",
		"OCI_TEST_CONTENT_DISCOVERY=1", "OCI_TEST_CONTENT_MANAGEMENT=1",
		"OCI_HIDE_SKIPPED_WORKFLOWS=0",
		// We do not mount without ?from= (the blob could be any repository's),
		// so the suite checks that such a mount answers 202.
		"OCI_AUTOMATIC_CROSSMOUNT=0",
		"OCI_REPORT_DIR="+report,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("conformance output:\n%s", out)
	if err != nil {
		t.Fatalf("conformance suite failed: %v (report in %s)", err, report)
	}
}
