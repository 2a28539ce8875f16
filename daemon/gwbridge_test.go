package daemon

import (
	"strings"
	"testing"
)

// TestCheckGWBridgeSubnet: --gwbridge-subnet takes an IPv4 subnet or a
// gateway with its prefix, and refuses anything else in one line.
func TestCheckGWBridgeSubnet(t *testing.T) {
	for _, ok := range []string{DefaultGWBridgeSubnet, "198.19.251.0/24", "198.19.251.1/24", "10.9.0.0/30"} {
		if err := checkGWBridgeSubnet(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "nope", "172.16.0.0", "fd00::/64", "10.9.0.0/31", "10.9.0.0/33"} {
		err := checkGWBridgeSubnet(bad)
		if err == nil || !strings.Contains(err.Error(), "--gwbridge-subnet") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want a one-line error naming the flag", bad, err)
		}
	}
}
