package main

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// newHTTPHandler serves the liveness and readiness probes.
func newHTTPHandler(loops []*bridge.Loop, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var reasons []string
		t := now()
		for _, l := range loops {
			if err := l.Status().Ready(t); err != nil {
				reasons = append(reasons, err.Error())
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(reasons, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
