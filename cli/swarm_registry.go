package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/cobra"
)

// registryTokenLabel is the cluster label that holds the hex SHA-256 of the
// cluster registry's user token: the daemon's RegistryTokenLabel (the CLI
// imports nothing of the daemon).
const registryTokenLabel = "shoal.registry.token-sha256"

// newSwarmRegistryTokenCommand is `swarm registry-token`: it makes the
// cluster registry's user token, prints it once and stores only its hash in
// the cluster object; --rotate replaces an existing one (the old stops
// working at once). The token is the password of HTTP basic auth (any user
// name) or a bearer token.
func newSwarmRegistryTokenCommand() *cobra.Command {
	var rotate bool
	cmd := &cobra.Command{
		Use:   "registry-token [OPTIONS]",
		Short: "Make (or --rotate) the cluster registry's user token and print it",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return fmt.Errorf("registry token: %w", err)
			}
			token := "SHRTKN-" + hex.EncodeToString(raw)
			sum := sha256.Sum256([]byte(token))
			err = updateSwarmSpec(cmd, c, func(spec *swarm.Spec) error {
				if spec.Labels[registryTokenLabel] != "" && !rotate {
					return errors.New("the cluster already has a registry token, stored hashed so it cannot be shown again: --rotate makes a new one")
				}
				if spec.Labels == nil {
					spec.Labels = map[string]string{}
				}
				spec.Labels[registryTokenLabel] = hex.EncodeToString(sum[:])
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(streamsOf(cmd).out, token)
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "Replace the existing token")
	return cmd
}
