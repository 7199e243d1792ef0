package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
)

// fakeDigitalOcean is droplettest's fake of GET /v2/droplets, serving
// DigitalOcean's own example listing on one page, with a fixed
// RateLimit-Remaining: what the token's other users leave, 4321 unless a
// test sets it. A test can add droplets to it or make it fail.
type fakeDigitalOcean struct {
	URL string
	api *droplettest.API
	t   *testing.T
}

const fakeDOToken = droplettest.Token

func startFakeDigitalOcean(t *testing.T) *fakeDigitalOcean {
	t.Helper()
	api := droplettest.New(t, droplettest.FixtureDroplets(t, "droplets_list_all.json"))
	api.Set(func(s *droplettest.State) {
		s.LastLinks, s.Remaining, s.Spend, s.Reset = "empty", 4321, false, time.Unix(1900000000, 0)
	})
	return &fakeDigitalOcean{URL: strings.TrimSuffix(api.URL(), "/"), api: api, t: t}
}

// add appends a copy of the first droplet under a new id, name and
// private address.
func (f *fakeDigitalOcean) add(id int, name, private string) {
	f.api.Set(func(s *droplettest.State) {
		d := droplettest.Copy(f.t, s.Droplets[0])
		d["id"], d["name"] = id, name
		droplettest.SetAddrs(d, private, "", "")
		s.Droplets = append(s.Droplets, d)
	})
}

// leave sets what the token's other users leave of its hourly limit.
func (f *fakeDigitalOcean) leave(remaining int) {
	f.api.Set(func(s *droplettest.State) { s.Remaining = remaining })
}

// served is the number of requests answered so far.
func (f *fakeDigitalOcean) served() int { return len(f.api.Requests()) }

// fail makes every request get status.
func (f *fakeDigitalOcean) fail(status int) {
	id := strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
	body := fmt.Sprintf(`{"id":%q,"message":%q}`, id, http.StatusText(status))
	f.api.Set(func(s *droplettest.State) {
		s.Fault = func(int) (int, string, http.Header) { return status, body, nil }
	})
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
