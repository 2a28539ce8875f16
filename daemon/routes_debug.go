package daemon

import (
	"net/http"
	"net/http/pprof"
)

// debugRoutes serves Go's profiler on the API socket, at the paths dockerd
// serves it (/debug/pprof/...), so that `go tool pprof` can read where a
// daemon's CPU goes while a cluster converges, without a rebuild. The socket
// is root's only, as the rest of the API.
func (d *Daemon) debugRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
