package cli

import (
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// swarmSpecJSON is a swarm spec as the daemon reads it: Docker's, with
// shoal's extension fields (the daemon's convert.Spec; the CLI imports
// nothing of the daemon). Its EncryptionConfig hides the embedded one in
// JSON, so withExtensions copies Docker's settings into it.
type swarmSpecJSON struct {
	swarm.Spec
	EncryptionConfig swarmEncryptionJSON
}

// swarmEncryptionJSON is Docker's EncryptionConfig with DataKeyRotation
// (`--data-key-rotation`); left out when zero, which keeps the current one.
type swarmEncryptionJSON struct {
	swarm.EncryptionConfig
	DataKeyRotation time.Duration `json:",omitempty"`
}

// swarmInitJSON is POST /swarm/init's body with the spec's extensions.
type swarmInitJSON struct {
	swarm.InitRequest
	Spec swarmSpecJSON
}

// withExtensions is spec with shoal's settings the flags gave.
func (o *swarmSpecFlags) withExtensions(spec swarm.Spec) swarmSpecJSON {
	return swarmSpecJSON{Spec: spec, EncryptionConfig: swarmEncryptionJSON{
		EncryptionConfig: spec.EncryptionConfig, DataKeyRotation: o.dataKeyRotation,
	}}
}
