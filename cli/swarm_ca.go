package cli

import (
	"bytes"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/cobra"
)

// caPoll is how often `swarm ca --rotate` looks at the rotation's progress.
const caPoll = 500 * time.Millisecond

// newSwarmCACommand is `swarm ca`: without flags it prints the root CA
// certificate; --rotate replaces the root (a new root, cross-signed by the
// old one, every node renewed onto it, then the old root dropped) and,
// unless --detach, waits for that and prints the new root; --cert-expiry
// sets the validity of certificates issued from now on.
func newSwarmCACommand() *cobra.Command {
	var rotate, detach, quiet bool
	var specFlags swarmSpecFlags
	cmd := &cobra.Command{
		Use:   "ca [OPTIONS]",
		Short: "Display and rotate the root CA",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			out := streamsOf(cmd).out
			if detach && !rotate {
				return fmt.Errorf("--detach is only meaningful with --rotate")
			}
			before, err := c.SwarmInspect(ctx)
			if err != nil {
				return c.apiError(err)
			}
			if !rotate && !cmd.Flags().Changed("cert-expiry") {
				fmt.Fprint(out, before.TLSInfo.TrustRoot)
				return nil
			}
			err = updateSwarmSpec(cmd, c, func(spec *swarm.Spec) error {
				if err := specFlags.merge(cmd.Flags(), spec); err != nil {
					return err
				}
				if rotate {
					spec.CAConfig.ForceRotate++
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !rotate || detach {
				return nil
			}
			return waitRootRotation(cmd, c, before.TLSInfo, quiet)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&rotate, "rotate", false, "Rotate the swarm CA - if no certificate or key are provided, new ones will be generated")
	fl.BoolVarP(&detach, "detach", "d", false, "Exit immediately instead of waiting for the root rotation to converge")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Suppress progress output")
	addCertExpiryFlag(fl, &specFlags)
	return cmd
}

// waitRootRotation shows how many nodes hold a certificate of the new root
// until the managers complete the rotation, then prints the new root.
func waitRootRotation(cmd *cobra.Command, c *apiClient, old swarm.TLSInfo, quiet bool) error {
	ctx := commandContext(cmd)
	out := streamsOf(cmd).out
	last := ""
	for {
		sw, err := c.SwarmInspect(ctx)
		if err != nil {
			return c.apiError(err)
		}
		if !sw.RootRotationInProgress && sw.TLSInfo.TrustRoot != old.TrustRoot {
			if !quiet && last != "" {
				fmt.Fprintln(out, "rotated CA certificates")
			}
			fmt.Fprint(out, sw.TLSInfo.TrustRoot)
			return nil
		}
		nodes, err := c.NodeList(ctx, nil)
		if err != nil {
			return c.apiError(err)
		}
		done := 0
		for _, n := range nodes {
			if len(n.Description.TLSInfo.CertIssuerPublicKey) > 0 && !bytes.Equal(n.Description.TLSInfo.CertIssuerPublicKey, old.CertIssuerPublicKey) {
				done++
			}
		}
		line := fmt.Sprintf("rotated TLS certificates: %d/%d nodes (a node that is down is not waited for)", done, len(nodes))
		if !quiet && line != last {
			fmt.Fprintln(out, line)
			last = line
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(caPoll):
		}
	}
}
