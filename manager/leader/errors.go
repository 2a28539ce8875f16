package leader

import (
	"errors"

	"github.com/shoal-project/shoal/api"
)

// errNoStore refuses a Config without a store.
var errNoStore = api.Wrap(api.ErrInvalidArgument, errors.New("leader: no store"))
