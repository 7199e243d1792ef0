package main

import (
	"encoding/json"
	"fmt"
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
	Topology     string       `json:"topology"`
	Service      string       `json:"service"`
	Provider     string       `json:"provider"`
	Interval     string       `json:"interval,omitempty"`
	LastPoll     *time.Time   `json:"last_poll,omitempty"`
	LastSuccess  *time.Time   `json:"last_success,omitempty"`
	LastError    string       `json:"last_error,omitempty"`
	Failures     int          `json:"consecutive_failures"`
	Held         bool         `json:"shrink_held"`
	PublishError string       `json:"publish_error,omitempty"`
	Peers        []peerStatus `json:"peers"`
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
		}
		set := sets[name]
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
// HEALTHCHECK: it reads only PEERBRIDGE_HTTP_ADDR, and a wildcard host
// means loopback.
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
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
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
