package droplet

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
)

// TestEndToEnd runs the fake API through a provider, the reconcile loop and
// the DNS server, and reads the answers over a real socket.
func TestEndToEnd(t *testing.T) {
	api := droplettest.New(t, droplettest.MakeDroplets(t, 5))
	p, _ := newProvider(t, api, Options{Tag: "web"})
	srv, addr := dnstest.Serve(t)

	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "droplet", Port: 4000},
		Interval: time.Minute, Provider: p, Publishers: []bridge.Publisher{srv},
		RemoveAfter: 1, // PEERBRIDGE_REMOVE_AFTER=1: a droplet that left goes at once
	})
	answer := func() []string {
		t.Helper()
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion("web.peers.internal.", dns.TypeA), addr)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.A).A.String())
		}
		slices.Sort(out)
		return out
	}

	loop.Poll(context.Background())
	if got := answer(); !slices.Equal(got, []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}) {
		t.Fatalf("A answer %v", got)
	}
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion("node-3.web.peers.internal.", dns.TypeTXT), addr)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "id=1003" {
		t.Fatalf("TXT answer %v, %v", r, err)
	}

	// The API fails: DNS keeps answering with the last good set.
	api.Set(func(f *droplettest.State) {
		f.Fault = func(int) (int, string, http.Header) { return 503, `{"id":"service_unavailable","message":"down"}`, nil }
	})
	loop.Poll(context.Background())
	if got := answer(); len(got) != 5 {
		t.Fatalf("after an API failure DNS answers %v, want the 5 peers", got)
	}

	// The API recovers with a droplet fewer: DNS follows.
	api.Set(func(f *droplettest.State) {
		f.Fault = nil
		f.Droplets = f.Droplets[1:]
	})
	loop.Poll(context.Background())
	if got := answer(); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}) {
		t.Fatalf("after a droplet left, A answer %v", got)
	}
}

// BenchmarkPoll lists 10,000 droplets over 50 pages from a local fake API.
// requests/op must be 50: one request per page.
func BenchmarkPoll(b *testing.B) {
	api := droplettest.New(b, droplettest.MakeDroplets(b, 10_000))
	p, _ := newProvider(b, api, Options{Tag: "web"})
	b.ReportAllocs()
	for b.Loop() {
		peers, err := p.Peers(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(peers) != 10_000 {
			b.Fatalf("%d peers", len(peers))
		}
	}
	b.ReportMetric(float64(p.Requests())/float64(b.N), "requests/op")
	if per := p.Requests() / int64(b.N); per != 50 {
		b.Fatalf("%d requests per poll, want 50", per)
	}
}

// BenchmarkRequestsPerPoll reports the API requests one poll costs for
// clusters of several sizes, for the requests-per-hour table of .ci/bench.
func BenchmarkRequestsPerPoll(b *testing.B) {
	for _, n := range []int{3, 20, 100, 1000} {
		b.Run(fmt.Sprintf("droplets=%d", n), func(b *testing.B) {
			p, _ := newProvider(b, droplettest.New(b, droplettest.MakeDroplets(b, n)), Options{Tag: "web"})
			for b.Loop() {
				if _, err := p.Peers(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Requests())/float64(b.N), "requests/op")
		})
	}
}
