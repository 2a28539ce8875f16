package leader

import (
	"errors"

	"github.com/shoal-project/shoal/api"
)

// errNoStore refuses a Config without a store.
var errNoStore = api.Wrap(api.ErrInvalidArgument, errors.New("leader: no store"))

// isConflict reports whether err means "re-read and decide again".
func isConflict(err error) bool { return errors.Is(err, api.ErrConflict) }
