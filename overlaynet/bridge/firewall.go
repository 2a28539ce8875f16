package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Why rules in iptables' FORWARD chain, and not only in our own table:
//
// A host running Docker sets the FORWARD policy of iptables' filter table to
// DROP. Docker 20.10 on Debian drives iptables-nft (this machine's `iptables`
// is "v1.8.9 (nf_tables)"), which puts that chain in nftables table
// `ip filter`; older setups use the legacy x_tables backend. Either way it is
// a separate base chain on the forward hook, and netfilter runs every base
// chain: an accept in our table only ends our chain, while a drop anywhere is
// final. The only way through is an accept inside that very chain, so, like
// Docker itself and like kube-proxy, we insert two rules at the top of FORWARD
// with the same iptables binary Docker uses (each rule tagged with a comment
// naming the bridge, so Remove deletes exactly ours):
//
//	-i <br> -j ACCEPT                                                  (from containers, incl. container to container)
//	-o <br> -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT  (replies and published ports)
//
// With br_netfilter loaded and bridge-nf-call-iptables=1 (the case here),
// frames bridged between two containers also traverse FORWARD with in and out
// device both the bridge; the first rule accepts them.
//
// The rules are inserted even when FORWARD's policy is ACCEPT, because Docker
// may start after us. On a host without any iptables binary nothing can have
// a FORWARD policy of DROP in x_tables, and only our own table is used.
// The table `ip filter` that iptables-nft creates on first use stays when we
// remove our rules: other programs may rely on it.

// forwardRules are the rules this network needs in FORWARD.
func forwardRules(bridge string) [][]string {
	comment := []string{"-m", "comment", "--comment", "shoal bridge " + bridge}
	return [][]string{
		append([]string{"-i", bridge}, append(comment, "-j", "ACCEPT")...),
		append([]string{"-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT"}, append(comment, "-j", "ACCEPT")...),
	}
}

// iptablesBinaries lists the iptables front-ends whose FORWARD chain may drop
// our traffic: the default `iptables`, and `iptables-legacy` as well when it is
// a different backend that has a filter table in use.
func iptablesBinaries() []string {
	var bins []string
	def, err := exec.LookPath("iptables")
	if err == nil {
		bins = append(bins, def)
	}
	legacy, err := exec.LookPath("iptables-legacy")
	if err != nil {
		return bins
	}
	// This thread's network namespace, the one the commands run in:
	// /proc/net is the thread group leader's, which a test (or a locked
	// thread of the daemon) may have moved to a container's namespace, and
	// the legacy rules were then never removed.
	names, _ := os.ReadFile("/proc/thread-self/net/ip_tables_names")
	if !bytes.Contains(names, []byte("filter")) {
		return bins
	}
	if def != "" {
		out, _ := exec.Command(def, "--version").Output()
		if bytes.Contains(out, []byte("legacy")) {
			return bins // the default already is the legacy backend
		}
	}
	return append(bins, legacy)
}

// AllowForward makes sure the FORWARD accept rules of bridge are present.
// bridge may be any host link that carries forwarded traffic to and from
// containers (the routing mesh's link to its ingress sandbox is one).
func AllowForward(ctx context.Context, bridge string) error {
	for _, bin := range iptablesBinaries() {
		for _, r := range forwardRules(bridge) {
			if iptables(ctx, bin, append([]string{"-C", "FORWARD"}, r...)...) == nil {
				continue
			}
			if err := iptables(ctx, bin, append([]string{"-I", "FORWARD"}, r...)...); err != nil {
				return fmt.Errorf("allow forwarding for %s: %w", bridge, err)
			}
		}
	}
	return nil
}

// DisallowForward deletes every copy of bridge's accept rules (those
// AllowForward inserted).
func DisallowForward(ctx context.Context, bridge string) error {
	for _, bin := range iptablesBinaries() {
		for _, r := range forwardRules(bridge) {
			// A crash between check and insert may have left duplicates; the
			// bound keeps a misbehaving binary from looping forever.
			for i := 0; i < 16; i++ {
				if iptables(ctx, bin, append([]string{"-C", "FORWARD"}, r...)...) != nil {
					break
				}
				if err := iptables(ctx, bin, append([]string{"-D", "FORWARD"}, r...)...); err != nil {
					return fmt.Errorf("remove forwarding rules of %s: %w", bridge, err)
				}
			}
		}
	}
	return nil
}

func iptables(ctx context.Context, bin string, args ...string) error {
	args = append([]string{"-w", "-t", "filter"}, args...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RemoveForwardRules deletes, in every backend AllowForward writes to, the
// FORWARD rules of the bridges for which stale is true, whether or not the
// bridge still exists: the rules of a bridge whose owner died (a killed
// daemon, a crashed test) stay in the chain after the link is gone, where
// DisallowForward, which needs the name, is never called for them. It
// returns how many rules it deleted.
func RemoveForwardRules(ctx context.Context, stale func(bridge string) bool) (int, error) {
	n := 0
	var errs []error
	for _, bin := range iptablesBinaries() {
		out, err := exec.CommandContext(ctx, bin, "-w", "-t", "filter", "-S", "FORWARD").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s -S FORWARD: %w", bin, err))
			continue
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			_, rest, ok := strings.Cut(line, `--comment "shoal bridge `)
			name, _, ok2 := strings.Cut(rest, `"`)
			if !ok || !ok2 || seen[name] || !stale(name) {
				continue
			}
			seen[name] = true
			for _, r := range forwardRules(name) {
				for i := 0; i < 16 && iptables(ctx, bin, append([]string{"-D", "FORWARD"}, r...)...) == nil; i++ {
					n++
				}
			}
		}
	}
	return n, errors.Join(errs...)
}
