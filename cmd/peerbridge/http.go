package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/dnsserver"
)

// newHTTPHandler serves the probes, the metrics and the status.
func newHTTPHandler(loops []*bridge.Loop, dns *dnsserver.Server, consul *consulpub.Publisher, now func() time.Time) http.Handler {
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(newRegistry(loops, dns, consul), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status(loops, dns, consul, now()))
	})
	return mux
}

// statusDoc is the JSON of /status.
type statusDoc struct {
	Version    string           `json:"version"`
	Ready      bool             `json:"ready"`
	Zone       string           `json:"zone"`
	Serial     uint32           `json:"serial"`
	Topologies []topologyStatus `json:"topologies"`
	Consul     *consulStatus    `json:"consul,omitempty"`
}

type topologyStatus struct {
	Topology     string       `json:"topology"`
	Service      string       `json:"service"`
	Provider     string       `json:"provider"`
	Interval     string       `json:"interval"`
	Ready        bool         `json:"ready"`
	NotReady     string       `json:"not_ready,omitempty"`
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
}

func status(loops []*bridge.Loop, dns *dnsserver.Server, consul *consulpub.Publisher, now time.Time) statusDoc {
	doc := statusDoc{Version: buildVersion(), Ready: true, Zone: dns.Zone(), Serial: dns.Snapshot().Serial()}
	for _, l := range loops {
		st := l.Status()
		ts := topologyStatus{
			Topology: st.Topology, Service: st.Service, Provider: st.Provider, Interval: st.Interval.String(),
			Ready: true, LastPoll: timePtr(st.LastPoll), LastSuccess: timePtr(st.LastSuccess),
			LastError: st.LastError, Failures: st.Failures, Held: st.Held, PublishError: st.PublishError,
			Peers: []peerStatus{},
		}
		if err := st.Ready(now); err != nil {
			ts.Ready, ts.NotReady, doc.Ready = false, err.Error(), false
		}
		for _, p := range st.Peers {
			ps := peerStatus{Name: p.Name, ID: p.ID, Health: p.Health.String(), Attrs: p.Attrs}
			for _, a := range p.Addrs {
				ps.Addrs = append(ps.Addrs, a.String())
			}
			ts.Peers = append(ts.Peers, ps)
		}
		doc.Topologies = append(doc.Topologies, ts)
	}
	if consul != nil {
		s := consul.Stats()
		doc.Consul = &consulStatus{Creates: s.Creates, Updates: s.Updates, Deletes: s.Deletes, Failures: s.Failures, LastSync: timePtr(s.LastSync)}
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
