package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// fakeDigitalOcean serves GET /v2/droplets from DigitalOcean's own example
// listing, with the rate-limit headers of the real API. A test can add
// droplets to it or make it fail.
type fakeDigitalOcean struct {
	URL string

	mu       sync.Mutex
	droplets []map[string]any
	status   int // when non-zero, every request gets this status
	// remaining is RateLimit-Remaining: what other users of the token
	// leave; 4321 unless a test sets it.
	remaining int
	requests  int
}

const fakeDOToken = "dop_v1_fakeapitoken"

func startFakeDigitalOcean(t *testing.T) *fakeDigitalOcean {
	t.Helper()
	b, err := os.ReadFile("../../providers/droplet/testdata/droplets_list_all.json")
	if err != nil {
		t.Fatal(err)
	}
	var listing struct {
		Droplets []map[string]any `json:"droplets"`
	}
	if err := json.Unmarshal(b, &listing); err != nil {
		t.Fatal(err)
	}
	f := &fakeDigitalOcean{droplets: listing.Droplets, remaining: 4321}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeDigitalOcean) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("RateLimit-Limit", "5000")
	f.requests++
	w.Header().Set("RateLimit-Remaining", fmt.Sprint(f.remaining))
	w.Header().Set("RateLimit-Reset", "1900000000")
	switch {
	case r.URL.Path != "/v2/droplets":
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"id":"not_found","message":"The resource you requested could not be found."}`)
	case r.Header.Get("Authorization") != "Bearer "+fakeDOToken:
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"id":"unauthorized","message":"Unable to authenticate you."}`)
	case f.status != 0:
		w.WriteHeader(f.status)
		id := strings.ReplaceAll(strings.ToLower(http.StatusText(f.status)), " ", "_")
		fmt.Fprintf(w, `{"id":%q,"message":%q}`, id, http.StatusText(f.status))
	default:
		json.NewEncoder(w).Encode(map[string]any{
			"droplets": f.droplets, "links": map[string]any{}, "meta": map[string]any{"total": len(f.droplets)},
		})
	}
}

// add appends a copy of the first droplet under a new id, name and
// private address.
func (f *fakeDigitalOcean) add(id int, name, private string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d map[string]any
	b, _ := json.Marshal(f.droplets[0])
	json.Unmarshal(b, &d)
	d["id"], d["name"] = id, name
	d["networks"] = map[string]any{
		"v4": []any{map[string]any{"ip_address": private, "netmask": "255.255.0.0", "gateway": "nil", "type": "private"}},
		"v6": []any{},
	}
	f.droplets = append(f.droplets, d)
}

// leave sets what the token's other users leave of its hourly limit.
func (f *fakeDigitalOcean) leave(remaining int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remaining = remaining
}

// served is the number of requests answered so far.
func (f *fakeDigitalOcean) served() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeDigitalOcean) fail(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// startFakeRancher answers like a Rancher 1.x metadata server, from the
// real server's capture.
func startFakeRancher(t *testing.T) string {
	t.Helper()
	services, err := os.ReadFile("../../providers/rancher/testdata/latest_services.json")
	if err != nil {
		t.Fatal(err)
	}
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch r.URL.Path {
		case "/latest/services":
			w.Write(services)
		case "/latest/version":
			fmt.Fprintln(w, `"862fe1d9-d27f-443e-ab64-af15a75095a6"`)
		default:
			http.Error(w, `{"code":404,"message":"Not found","type":"error"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(meta.Close)
	return meta.URL
}

// freePort returns a loopback port that was free a moment ago, for
// programs that must be told their port before they start.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
