package daemon

import (
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
)

// Data path port range and default (swarm init --data-path-port), Docker's.
const (
	DefaultDataPathPort = 4789
	minDataPathPort     = 1024
	maxDataPathPort     = 49151
)

// initNetworks is what `swarm init` sets about cluster networks: where
// overlay subnets come from and the VXLAN UDP port.
type initNetworks struct {
	pools        []string
	subnetSize   uint32
	dataPathPort uint32
}

// initNetworksOf checks the network settings of a swarm init request.
func initNetworksOf(req swarm.InitRequest) (initNetworks, error) {
	var n initNetworks
	for _, p := range req.DefaultAddrPool {
		n.pools = append(n.pools, p.String())
	}
	n.subnetSize = req.SubnetSize
	if n.subnetSize == 0 {
		n.subnetSize = allocator.DefaultSubnetSize
	}
	if err := allocator.ValidatePool(n.pools, n.subnetSize); err != nil {
		return n, badRequest("%s", err)
	}
	if p := req.DataPathPort; p != 0 && (p < minDataPathPort || p > maxDataPathPort) {
		return n, badRequest("data path port %d is out of range %d-%d", p, minDataPathPort, maxDataPathPort)
	}
	n.dataPathPort = req.DataPathPort
	return n, nil
}

// apply stores n in the new cluster object.
func (n initNetworks) apply(c *api.Cluster) {
	c.DefaultAddressPool = n.pools
	if len(n.pools) == 0 {
		c.DefaultAddressPool = []string{allocator.DefaultPool}
	}
	c.SubnetSize = n.subnetSize
	c.DataPathPort = n.dataPathPort
	if c.DataPathPort == 0 {
		c.DataPathPort = DefaultDataPathPort
	}
}
