package worker

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/overlaynet/encrypt"
)

// TestEncryptedAttachmentNeedsKey: a task on an encrypted network gets the
// network's key from DataKey; without one its attachment is an error naming
// the network (it never runs in plaintext); a plaintext network gets none.
func TestEncryptedAttachmentNeedsKey(t *testing.T) {
	task := overlayTask("t1", "198.19.251.10/24")
	task.Networks[0].Network.Spec.DriverConfig = &api.Driver{Name: "overlay", Options: map[string]string{encrypt.Option: ""}}
	o := &OverlayNetwork{NetNSDir: t.TempDir()}
	if _, err := o.attachments(task); err == nil || !strings.Contains(err.Error(), "network front is encrypted and this node has no key for it yet") {
		t.Fatalf("no DataKey: %v", err)
	}
	o.DataKey = func(uint32) []byte { return nil }
	if _, err := o.attachments(task); err == nil {
		t.Fatal("a nil key was accepted for an encrypted network")
	}
	key := bytes.Repeat([]byte{7}, encrypt.KeySize)
	o.DataKey = func(vni uint32) []byte {
		if vni != 4200 {
			t.Errorf("key asked for VNI %d", vni)
		}
		return key
	}
	atts, err := o.attachments(task)
	if err != nil || len(atts) != 1 || !bytes.Equal(atts[0].net.Key, key) {
		t.Fatalf("with a key: %v %v", atts, err)
	}
	atts, err = o.attachments(overlayTask("t2", "198.19.251.11/24"))
	if err != nil || len(atts) != 1 || atts[0].net.Key != nil {
		t.Fatalf("plaintext network: %v %v", atts, err)
	}
}
