package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// state is what survives a daemon restart: the subnet the allocations were
// made in, the allocation cursor and every endpoint with its ports. It is the
// single source from which the nftables table is regenerated.
type state struct {
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Last is the most recently allocated address: allocation continues after
	// it, so a released address is not handed out again at once (peers may
	// still cache its old MAC).
	Last      netip.Addr           `json:"last"`
	Endpoints map[string]*endpoint `json:"endpoints"`
}

// endpoint is one sandbox known to the network. IP is invalid for a
// `--network none` sandbox, which has no veth either.
type endpoint struct {
	NetNS string     `json:"netns"`
	Veth  string     `json:"veth,omitempty"`
	IP    netip.Addr `json:"ip,omitzero"`
	MAC   string     `json:"mac,omitempty"`
	// IfName is the endpoint's interface in the namespace; "" is eth0.
	IfName string `json:"ifname,omitempty"`
	// Shared marks a namespace that belongs to another network's endpoint
	// (a container connected to a second network): it is not removed here.
	Shared bool `json:"shared,omitempty"`
	// Route: a Shared endpoint that holds the namespace's default route
	// all the same (AttachOptions.Route).
	Route bool          `json:"route,omitempty"`
	Ports []PortMapping `json:"ports,omitempty"`
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", path, err)
	}
	if s.Endpoints == nil {
		s.Endpoints = map[string]*endpoint{}
	}
	return &s, nil
}

// save writes the state atomically (a complete temporary file renamed over
// the old one), not durably: it describes live endpoints, which a machine
// crash takes down with it, and a restarted daemon reconciles the state with
// what it finds. The two fsyncs it made per container start and stop were a
// tenth of a `run --rm` here. (containerd/atomicfile.Replace does the same;
// overlaynet may not import it.)
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
