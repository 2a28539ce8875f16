package api

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The error classes of every cluster call. Code wraps one of them with %w (or
// with Wrap) and callers test with errors.Is; ToGRPC and HTTPStatus turn the
// class into the wire's code, FromGRPC turns it back, so a class survives a
// hop through gRPC (a follower forwarding to the leader, the daemon calling a
// manager) and reaches the REST client as the status Docker would send.
var (
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflict")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotLeader          = errors.New("not the raft leader")
	ErrUnavailable        = errors.New("unavailable")
	ErrFailedPrecondition = errors.New("failed precondition")
)

// class ties a sentinel to its gRPC code and HTTP status. HTTP statuses follow
// the Docker Engine API (which sends 400 for both invalid arguments and
// refused state changes, and 503 when the swarm cannot serve). The gRPC codes
// are distinct so FromGRPC is exact: NotLeader uses Aborted ("retry at a
// higher level", here: at the leader) to stay apart from Unavailable.
type class struct {
	err  error
	code codes.Code
	http int
}

var classes = []class{
	{ErrNotFound, codes.NotFound, http.StatusNotFound},
	{ErrConflict, codes.AlreadyExists, http.StatusConflict},
	{ErrInvalidArgument, codes.InvalidArgument, http.StatusBadRequest},
	{ErrNotLeader, codes.Aborted, http.StatusServiceUnavailable},
	{ErrUnavailable, codes.Unavailable, http.StatusServiceUnavailable},
	{ErrFailedPrecondition, codes.FailedPrecondition, http.StatusBadRequest},
}

// classError is err placed in class: its message is err's alone (the class
// name would only repeat what the status code says), and errors.Is matches
// both err's chain and the class.
type classError struct {
	class error
	err   error
}

func (e *classError) Error() string   { return e.err.Error() }
func (e *classError) Unwrap() []error { return []error{e.err, e.class} }

// Wrap returns err placed in class (one of the Err* sentinels above), keeping
// err's message and chain. Wrap(class, nil) is nil.
func Wrap(class, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, class) {
		return err
	}
	return &classError{class: class, err: err}
}

// ClassOf returns the class sentinel err belongs to, or nil if none.
func ClassOf(err error) error {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.err
		}
	}
	return nil
}

// GRPCCode is the gRPC code for err: its class's, codes.Canceled or
// codes.DeadlineExceeded for context errors, codes.OK for nil, else Unknown.
func GRPCCode(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}

// HTTPStatus is the REST status for err: its class's, 200 for nil, else 500.
func HTTPStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.http
		}
	}
	return http.StatusInternalServerError
}

// ToGRPC turns err into a gRPC status error with its class's code and its
// message, for returning from a gRPC handler.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && ClassOf(err) == nil {
		return err
	}
	return status.Error(GRPCCode(err), err.Error())
}

// FromGRPC turns an error returned by a gRPC call back into one that
// errors.Is matches against its class (or against context.Canceled /
// context.DeadlineExceeded). Errors that are not gRPC statuses, or whose code
// has no class, are returned unchanged.
func FromGRPC(err error) error {
	s, ok := status.FromError(err)
	if err == nil || !ok {
		return err
	}
	msg := errors.New(s.Message())
	switch s.Code() {
	case codes.Canceled:
		return &classError{class: context.Canceled, err: msg}
	case codes.DeadlineExceeded:
		return &classError{class: context.DeadlineExceeded, err: msg}
	}
	for _, c := range classes {
		if c.code == s.Code() {
			return &classError{class: c.err, err: msg}
		}
	}
	return err
}
