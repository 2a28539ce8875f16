// Package overlaynet is the root of shoal's node networking. It holds no code
// itself; its subpackages are:
//
//   - sandbox: network sandboxes as kernel objects — a network namespace
//     bind-mounted on a file, and veth links whose inner end is addressed and
//     routed inside one. Shared by every network driver.
//   - bridge: a node's default local bridge network (what `docker run
//     --network bridge -p 8080:80` gives): the bridge, its IPAM, NAT and
//     published ports in an nftables table of its own.
//   - overlay: a VXLAN overlay network's node side — a sandbox namespace per
//     network (bridge + VXLAN device), a veth per local endpoint, static
//     FDB/neighbour entries for remote ones, adoption after a restart.
//   - peers: the peer table, gossiped over memberlist (encrypted): which
//     endpoint lives behind which node's VTEP.
//
// DNS and VIP load balancing will sit next to these and reuse sandbox. overlaynet never allocates cluster-wide resources:
// those come from the managers' allocator through api objects; only the local
// bridge network allocates, because its addresses never leave the node.
package overlaynet
