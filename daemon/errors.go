package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
)

// badRequest is a request the daemon refuses itself (bad query parameters,
// bodies, options it does not support): HTTP 400 with only the text given.
func badRequest(format string, a ...any) error {
	return &statusError{status: http.StatusBadRequest, err: fmt.Errorf(format, a...)}
}

// statusError forces a status on an error whatever the class of the error it
// wraps: a port clash at start is a conflict to the bridge but a 500 to
// Docker clients ("driver failed programming external connectivity").
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func withStatus(status int, err error) error { return &statusError{status: status, err: err} }

// statusOf maps the engine's error classes to the Engine API's statuses.
func statusOf(err error) int {
	var se *statusError
	var ee *containers.ExecError
	switch {
	case errors.As(err, &se):
		return se.status
	case errors.Is(err, containers.ErrNotModified):
		return http.StatusNotModified
	case errors.Is(err, containers.ErrNotFound), errors.Is(err, images.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, containers.ErrConflict), errors.Is(err, images.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, containers.ErrInvalidArgument), errors.Is(err, images.ErrInvalidReference),
		errors.Is(err, images.ErrInvalid), errors.As(err, &ee):
		// A command that cannot be run is the caller's mistake, as dockerd
		// says it (400); the CLI maps its message to exit 126/127.
		return http.StatusBadRequest
	case api.ClassOf(err) != nil:
		// The cluster's errors (control API, conversions): Docker's status
		// of their class, also across the gRPC hop (api.FromGRPC).
		return api.HTTPStatus(err)
	}
	return http.StatusInternalServerError
}

// errorResponse is the Engine API's error body.
type errorResponse struct {
	Message string `json:"message"`
}

// writeError writes Docker's error body {"message": "..."} on one line, or
// a bare 304 for ErrNotModified.
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	if status >= 500 {
		slog.Error("request failed", "err", err)
	}
	writeJSON(w, status, errorResponse{Message: messageOf(err)})
}

// messageOf is the one-line message of err as the API shows it. The
// engine's class texts that lead its messages ("conflict: Conflict. The
// container name ...") go: dockerd's messages have none, and scripts match
// on its words.
func messageOf(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	for _, class := range []error{containers.ErrConflict, containers.ErrInvalidArgument} {
		// Only the containers' own: an image's conflict keeps its
		// "conflict: ", which dockerd's rmi messages begin with.
		if errors.Is(err, class) {
			msg = strings.TrimPrefix(msg, class.Error()+": ")
		}
	}
	// A path missing in a container: dockerd names the file only.
	if rest, ok := strings.CutPrefix(msg, containers.ErrNotFound.Error()+": "); ok && strings.HasPrefix(rest, "Could not find the file") {
		msg = rest
	}
	return msg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// jsonField names a field as the client wrote it: the decoder's path goes
// through the Go structs that the API types embed (CreateRequest's Config,
// HostConfig's Resources), which the JSON does not have.
func jsonField(path string) string {
	path = strings.TrimPrefix(path, "Config.")
	return strings.ReplaceAll(path, ".Resources.", ".")
}

// maxBody bounds the JSON bodies the daemon decodes (create, exec): a
// container config is a few KiB; 4 MiB leaves room for huge env lists.
const maxBody = 4 << 20

// decodeJSON reads one JSON object from the body into v. Empty, malformed,
// oversized bodies and trailing garbage are refused with a one-line 400
// that says what was wrong and where.
func decodeJSON(r *http.Request, v any) error {
	if r.Body == nil || r.Body == http.NoBody {
		return badRequest("invalid JSON: empty request body")
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return badRequest("invalid JSON: empty request body")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("invalid JSON: unexpected end of JSON input")
		case errors.As(err, &syn):
			return badRequest("invalid JSON: %v (at byte %d)", syn, syn.Offset)
		case errors.As(err, &typ):
			return badRequest("invalid JSON: field %s: cannot use a JSON %s as %v", jsonField(typ.Field), typ.Value, typ.Type)
		case dec.InputOffset() > maxBody:
			return badRequest("invalid JSON: request body larger than %d bytes", maxBody)
		}
		return badRequest("invalid JSON: %v", err)
	}
	if dec.More() {
		return badRequest("invalid JSON: unexpected data after the object")
	}
	return nil
}
