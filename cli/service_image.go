package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
)

// serviceImageFlags are the image flags of `service create` and `update`.
type serviceImageFlags struct {
	noResolve, withAuth bool
}

func addServiceImageFlags(fl *pflag.FlagSet, o *serviceImageFlags) {
	fl.BoolVar(&o.noResolve, "no-resolve-image", false, "Do not query the registry to resolve image digest and supported platforms")
	fl.BoolVar(&o.withAuth, "with-registry-auth", false, "Send registry authentication details to swarm agents")
}

// registryAuth is the X-Registry-Auth the service is sent with: the
// client's credentials for image's registry with --with-registry-auth.
func (o serviceImageFlags) registryAuth(image string) (string, error) {
	if !o.withAuth {
		return "", nil
	}
	named, err := parseImageRef(image)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", image, err)
	}
	return registryAuthFor(named)
}

// resolveTimeout bounds the digest lookup of service create/update.
const resolveTimeout = 5 * time.Second

// pin resolves image on the daemon (GET /distribution/NAME/json: the
// cluster registry first, then the name's registry) and returns it pinned
// as name:tag@digest, as docker's CLI pins a service. A name that already
// carries a digest, and --no-resolve-image, keep image as given. An image
// that cannot be resolved stays unpinned with a warning that says why, as
// docker's CLI does: an image imported on every node still runs.
func (o serviceImageFlags) pin(ctx context.Context, c *apiClient, image, auth string, warn io.Writer) (string, error) {
	if o.noResolve {
		return image, nil
	}
	named, err := parseImageRef(image)
	if err != nil {
		return "", fmt.Errorf("invalid reference format: %q: %w", image, err)
	}
	if named.Canonical() {
		return image, nil
	}
	// Bounded: a manager cut off from the others (or a registry that does
	// not answer) must not hold the create for the minute a dial can take;
	// an unresolved image only warns.
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	res, err := c.DistributionInspect(rctx, image, auth)
	if err != nil {
		fmt.Fprintf(warn, "image %s could not be accessed on a registry to record its digest (%v). "+
			"Each node will access %s independently, possibly leading to different nodes running different versions of the image.\n",
			image, c.apiError(err), image)
		return image, nil
	}
	pinned, err := named.WithDefaultTag().WithDigest(res.Descriptor.Digest.String())
	if err != nil {
		return "", fmt.Errorf("image %s: %w", image, err)
	}
	return pinned.Familiar(), nil
}
