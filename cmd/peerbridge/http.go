package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerbridge/peerbridge/bridge"
)

// newHTTPHandler serves the probes, the metrics, Prometheus' service
// discovery and the status.
func newHTTPHandler(st *state, reg prometheus.Gatherer, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if reasons := st.notReady(now()); len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(reasons, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /sd/prometheus", serveSD(st))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status(st, now()))
	})
	return mux
}

// statusDoc is the JSON of /status.
type statusDoc struct {
	Version    string           `json:"version"`
	Role       role             `json:"role"`
	Ready      bool             `json:"ready"`
	NotReady   []string         `json:"not_ready,omitempty"`
	Zone       string           `json:"zone"`
	Serial     uint32           `json:"serial"`
	Topologies []topologyStatus `json:"topologies"`
	Consul     *consulStatus    `json:"consul,omitempty"`
}

type topologyStatus struct {
	Topology     string     `json:"topology"`
	Service      string     `json:"service"`
	Provider     string     `json:"provider"`
	Interval     string     `json:"interval,omitempty"`
	LastPoll     *time.Time `json:"last_poll,omitempty"`
	LastSuccess  *time.Time `json:"last_success,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	Failures     int        `json:"consecutive_failures"`
	Held         bool       `json:"shrink_held"`
	PublishError string     `json:"publish_error,omitempty"`
	// SetSource is where the published set came from (poll, saved,
	// consul), SetAge how long ago it was last confirmed.
	SetSource string       `json:"set_source,omitempty"`
	SetAge    *float64     `json:"set_age_seconds,omitempty"`
	Peers     []peerStatus `json:"peers"`
}

type peerStatus struct {
	Name   string            `json:"name"`
	ID     string            `json:"id"`
	Addrs  []string          `json:"addresses"`
	Health string            `json:"health"`
	Attrs  map[string]string `json:"attributes,omitempty"`
}

type consulStatus struct {
	Creates  int64      `json:"creates"`
	Updates  int64      `json:"updates"`
	Deletes  int64      `json:"deletes"`
	Failures int64      `json:"sync_failures"`
	LastSync *time.Time `json:"last_sync,omitempty"`
	// LastError is why the last sync failed (a request past its deadline,
	// an entry refused), empty once one succeeds.
	LastError  string `json:"last_error,omitempty"`
	Collisions int64  `json:"node_collisions"`
}

// status describes the replica. Peers are what DNS serves (a follower's
// come from the leader through Consul); polls and errors are the loops',
// which only a leader or a single bridge runs.
func status(st *state, now time.Time) statusDoc {
	reasons := st.notReady(now)
	doc := statusDoc{
		Version: buildVersion(), Role: st.role(), Ready: len(reasons) == 0, NotReady: reasons,
		Zone: st.dns.Zone(), Serial: st.dns.Snapshot().Serial(),
	}
	loops := map[string]bridge.Status{}
	for _, l := range st.loops() {
		loops[l.Status().Topology] = l.Status()
	}
	sets := st.dns.Sets()
	for _, name := range st.topologies {
		ts := topologyStatus{Topology: name, Peers: []peerStatus{}}
		if l, ok := loops[name]; ok {
			ts.Service, ts.Provider, ts.Interval = l.Service, l.Provider, l.Interval.String()
			ts.LastPoll, ts.LastSuccess, ts.LastError = timePtr(l.LastPoll), timePtr(l.LastSuccess), l.LastError
			ts.Failures, ts.Held, ts.PublishError = l.Failures, l.Held, l.PublishError
			if l.SetSource != "" {
				age := max(now.Sub(l.SetAt).Seconds(), 0)
				ts.SetSource, ts.SetAge = string(l.SetSource), &age
			}
		}
		set, has := sets[name]
		if ts.SetSource == "" && has && st.role() == roleFollower {
			ts.SetSource = string(bridge.SourceConsul)
		}
		if ts.Service == "" {
			ts.Service, ts.Provider = set.Service.Name, set.Service.Provider
		}
		for _, p := range set.Peers {
			ps := peerStatus{Name: p.Name, ID: p.ID, Health: p.Health.String(), Attrs: p.Attrs}
			for _, a := range p.Addrs {
				ps.Addrs = append(ps.Addrs, a.String())
			}
			ts.Peers = append(ts.Peers, ps)
		}
		doc.Topologies = append(doc.Topologies, ts)
	}
	if c := st.consul(); c != nil {
		s := c.Stats()
		doc.Consul = &consulStatus{Creates: s.Creates, Updates: s.Updates, Deletes: s.Deletes, Failures: s.Failures, LastSync: timePtr(s.LastSync),
			LastError: s.LastError, Collisions: s.Collisions}
	}
	return doc
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// health asks a running peerbridge's /healthz, for a container's
// HEALTHCHECK: it reads only PEERBRIDGE_HTTP_ADDR (a wildcard host means
// loopback) and PEERBRIDGE_WEB_CONFIG_FILE (HTTPS when it sets TLS; the
// probe needs no password).
func (m *Main) health() error {
	addr := os.Getenv("PEERBRIDGE_HTTP_ADDR")
	if addr == "" {
		addr = ":8654"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("PEERBRIDGE_HTTP_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 3 * time.Second}
	scheme := "http"
	if path := os.Getenv("PEERBRIDGE_WEB_CONFIG_FILE"); path != "" {
		if w, err := loadWebConfig(path); err == nil && w.tlsEnabled() {
			// The probe asks its own process over loopback, by address: the
			// certificate names the service, not 127.0.0.1, and nothing
			// secret is sent or received ("ok"), so there is nothing for a
			// verification to protect.
			scheme = "https"
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
		}
	}
	resp, err := client.Get(scheme + "://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	fmt.Fprintln(m.Stdout, "ok")
	return nil
}

// newHTTPServer serves h with timeouts, so that no client holds a
// connection or a goroutine for ever, and with net/http's own error lines
// going through log, in its format.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A scrape of /metrics or /status with many peers takes well under
		// this; a client that stops reading does not keep it.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
		ErrorLog:     slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
}

// serveHTTP serves srv on ln until ctx is done, through web's TLS and
// passwords when PEERBRIDGE_WEB_CONFIG_FILE is set (web is nil otherwise).
func serveHTTP(ctx context.Context, ln net.Listener, srv *http.Server, web *webConfig) error {
	if l, ok := ln.(*httpConnLimiter); ok {
		srv.ConnState = l.connState
	}
	done := make(chan error, 1)
	if web != nil {
		go func() { done <- web.serve(srv, ln) }()
	} else {
		go func() { done <- srv.Serve(ln) }()
	}
	select {
	case err := <-done:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), httpStopGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // a slow client: cut it off
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// httpStopGrace is how long requests under way may take at a stop before
// their connections are closed: a stop never waits for a client.
const httpStopGrace = time.Second
