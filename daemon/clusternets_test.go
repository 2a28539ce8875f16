package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

// TestClusterNetworkSpec: what cluster networks do not have is refused
// with one line; the rest goes into the spec as given.
func TestClusterNetworkSpec(t *testing.T) {
	yes, no := true, false
	sub := netip.MustParsePrefix("198.18.4.0/24")
	for _, c := range []struct {
		req  network.CreateRequest
		want string
	}{
		{network.CreateRequest{}, "network name is required"},
		{network.CreateRequest{Name: "n", Driver: "macvlan"}, `driver "macvlan" is not a cluster driver`},
		{network.CreateRequest{Name: "n", Scope: "local"}, "swarm-scoped"},
		{network.CreateRequest{Name: "n", EnableIPv6: &yes}, "IPv6 is not supported"},
		{network.CreateRequest{Name: "n", EnableIPv4: &no}, "IPv4 cannot be disabled"},
		{network.CreateRequest{Name: "n", Ingress: true}, "creating an ingress network is not supported"},
		{network.CreateRequest{Name: "n", ConfigOnly: true}, "config-only"},
		{network.CreateRequest{Name: "n", IPAM: &network.IPAM{Driver: "dhcp"}}, `IPAM driver "dhcp" is not supported`},
		{network.CreateRequest{Name: "n", IPAM: &network.IPAM{Options: map[string]string{"a": "b"}}}, "IPAM options are not supported"},
		{network.CreateRequest{Name: "n", IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: sub, IPRange: sub}}}}, "--ip-range is not supported"},
		{network.CreateRequest{Name: "n", IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: sub,
			AuxAddress: map[string]netip.Addr{"h": netip.MustParseAddr("198.18.4.9")}}}}}, "--aux-address is not supported"},
		{network.CreateRequest{Name: "n", IPAM: &network.IPAM{Config: []network.IPAMConfig{{Gateway: netip.MustParseAddr("198.18.4.1")}}}}, "needs a subnet"},
	} {
		_, err := clusterNetworkSpec(c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.req, err, c.want)
		}
	}
	spec, err := clusterNetworkSpec(network.CreateRequest{Name: "app", Driver: "overlay", Internal: true,
		Labels: map[string]string{"a": "b"}, Options: map[string]string{"encrypted": ""},
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: sub, Gateway: netip.MustParseAddr("198.18.4.254")}}}})
	if err != nil || !spec.GetInternal() || spec.GetAnnotations().GetLabels()["a"] != "b" ||
		spec.GetIpam().GetConfigs()[0].GetSubnet() != "198.18.4.0/24" || spec.GetIpam().GetConfigs()[0].GetGateway() != "198.18.4.254" {
		t.Fatalf("spec: %v %v", spec, err)
	}
}

// TestInitNetworks: swarm init's pool, mask length and data path port are
// checked, and the defaults are Swarm's.
func TestInitNetworks(t *testing.T) {
	for _, c := range []struct {
		req  swarm.InitRequest
		want string
	}{
		{swarm.InitRequest{DataPathPort: 80}, "data path port 80 is out of range 1024-49151"},
		{swarm.InitRequest{DataPathPort: 49152}, "out of range"},
		{swarm.InitRequest{DefaultAddrPool: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}, SubnetSize: 16}, "shorter than pool"},
		{swarm.InitRequest{DefaultAddrPool: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("198.18.1.0/24")}}, "overlap"},
	} {
		if _, err := initNetworksOf(c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.req, err, c.want)
		}
	}
	n, err := initNetworksOf(swarm.InitRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cl := &api.Cluster{}
	n.apply(cl)
	if len(cl.DefaultAddressPool) != 1 || cl.DefaultAddressPool[0] != "10.0.0.0/8" || cl.SubnetSize != 24 || cl.DataPathPort != 4789 {
		t.Fatalf("defaults: %v", cl)
	}
}
