package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorClassesRoundTrip(t *testing.T) {
	tests := []struct {
		class error
		code  codes.Code
		http  int
	}{
		{ErrNotFound, codes.NotFound, http.StatusNotFound},
		{ErrConflict, codes.AlreadyExists, http.StatusConflict},
		{ErrInvalidArgument, codes.InvalidArgument, http.StatusBadRequest},
		{ErrNotLeader, codes.Aborted, http.StatusServiceUnavailable},
		{ErrUnavailable, codes.Unavailable, http.StatusServiceUnavailable},
		{ErrFailedPrecondition, codes.FailedPrecondition, http.StatusBadRequest},
	}
	seen := map[codes.Code]bool{}
	for _, tt := range tests {
		err := fmt.Errorf("service %q: %w", "web", tt.class)
		if got := GRPCCode(err); got != tt.code {
			t.Errorf("%v: code %v, want %v", tt.class, got, tt.code)
		}
		if got := HTTPStatus(err); got != tt.http {
			t.Errorf("%v: http %d, want %d", tt.class, got, tt.http)
		}
		if seen[tt.code] {
			t.Errorf("code %v used twice", tt.code)
		}
		seen[tt.code] = true

		wire := ToGRPC(err)
		if s, _ := status.FromError(wire); s.Code() != tt.code || s.Message() != err.Error() {
			t.Errorf("ToGRPC(%v) = %v", err, wire)
		}
		back := FromGRPC(wire)
		if !errors.Is(back, tt.class) || back.Error() != err.Error() || ClassOf(back) != tt.class {
			t.Errorf("FromGRPC(ToGRPC(%v)) = %v (class %v)", err, back, ClassOf(back))
		}
		// Forwarding twice keeps the class.
		if !errors.Is(FromGRPC(ToGRPC(back)), tt.class) {
			t.Errorf("%v lost its class over two hops", tt.class)
		}
	}
}

func TestWrap(t *testing.T) {
	base := errors.New("no such node abc")
	err := Wrap(ErrNotFound, base)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, base) || err.Error() != base.Error() {
		t.Fatalf("Wrap = %v", err)
	}
	if Wrap(ErrNotFound, nil) != nil {
		t.Fatal("Wrap(nil) not nil")
	}
	if Wrap(ErrNotFound, err) != err {
		t.Fatal("double wrap")
	}
	if ClassOf(base) != nil || HTTPStatus(base) != 500 || GRPCCode(base) != codes.Unknown {
		t.Fatal("unclassified error got a class")
	}
	if !errors.Is(FromGRPC(ToGRPC(context.Canceled)), context.Canceled) {
		t.Fatal("context.Canceled lost")
	}
	if plain := errors.New("x"); FromGRPC(plain) != plain {
		t.Fatal("FromGRPC changed a non-status error")
	}
}
