package hcloud

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/hcloud/hcloudtest"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestUnchangedPagesNotDecoded: a second listing of the same servers
// decodes no page and publishes the same peers; a server that changed
// costs the decoding of its page only, and its change is published.
func TestUnchangedPagesNotDecoded(t *testing.T) {
	api := hcloudtest.New(t, manyServers(200), nil) // 4 pages
	p, _ := newProvider(t, api, Options{LabelSelector: "app=web"})
	first, err := p.Peers(context.Background())
	if err != nil || len(first) != 200 || p.decoded.Load() != 4 {
		t.Fatalf("first poll: %d peers, %d pages decoded, %v; want 200, 4", len(first), p.decoded.Load(), err)
	}
	second, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 4 {
		t.Fatalf("steady poll decoded %d pages (%v), want none", p.decoded.Load()-4, err)
	}
	if !platformtest.EqualSets(first, second) {
		t.Fatal("steady poll published another set")
	}
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, _ *hcloudtest.Fault) {
		(*servers)[120].PublicNet.IPv4.IP = "203.0.113.9" // page 3
	})
	third, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 5 {
		t.Fatalf("one server changed: %d pages decoded (%v), want 1", p.decoded.Load()-4, err)
	}
	if got := platformtest.AddrOf(third, "node-120"); got != "[203.0.113.9]" {
		t.Errorf("the changed server is published with %s, want [203.0.113.9]", got)
	}
}

// TestFailedListingKeepsPages: a listing that fails half way does not
// replace the pages remembered.
func TestFailedListingKeepsPages(t *testing.T) {
	api := hcloudtest.New(t, manyServers(200), nil)
	p, _ := newProvider(t, api, Options{LabelSelector: "app=web"})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, fault *hcloudtest.Fault) {
		(*servers)[10].PublicNet.IPv4.IP = "203.0.113.9" // page 1
		*fault = func(_ *http.Request, page int) (int, string, http.Header) {
			if page == 3 {
				return 503, hcloudtest.Error("unavailable", "down"), nil
			}
			return 0, "", nil
		}
	})
	if _, err := p.Peers(context.Background()); err == nil {
		t.Fatal("a listing with a failed page succeeded")
	}
	before := p.decoded.Load()
	api.Set(func(_ *[]schema.Server, _ *[]schema.Network, fault *hcloudtest.Fault) { *fault = nil })
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("after a failed listing, %d pages decoded, want 1 (the changed page)", n)
	}
	if got := platformtest.AddrOf(peers, "node-10"); got != "[203.0.113.9]" {
		t.Errorf("node-10 published with %s, want [203.0.113.9]", got)
	}
}

// TestDuplicateAcrossCachedPage: a server on a decoded page and on an
// unchanged one is still a listing whose pages disagree.
func TestDuplicateAcrossCachedPage(t *testing.T) {
	api := hcloudtest.New(t, manyServers(100), nil) // 2 pages
	p, _ := newProvider(t, api, Options{LabelSelector: "app=web"})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, _ *hcloudtest.Fault) {
		(*servers)[70].ID = (*servers)[5].ID
	})
	before := p.decoded.Load()
	if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrInconsistentListing) {
		t.Fatalf("Peers = %v, want an inconsistent listing", err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("%d pages decoded, want 1: page 1 was unchanged", n)
	}
}

// TestPagesPublishSameSet: over random changes, a provider that reuses
// unchanged pages returns the same peers, and skips as many, as one
// that decodes every page; with public addresses and with a private
// network alike.
func TestPagesPublishSameSet(t *testing.T) {
	for _, opts := range []Options{{LabelSelector: "app=web"}, {Network: "cluster", Location: "fsn1"}} {
		t.Run(fmt.Sprintf("network=%q", opts.Network), func(t *testing.T) {
			api := hcloudtest.New(t, manyServers(150), []schema.Network{hcloudtest.Network(7, "cluster"), hcloudtest.Network(8, "other")})
			cached, _ := newProvider(t, api, opts)
			rng := rand.New(rand.NewPCG(30, 2))
			next := 150
			for step := range 16 { // 16 random steps cover every kind of change; more only cost CI minutes under -race
				api.Set(func(servers *[]schema.Server, _ *[]schema.Network, _ *hcloudtest.Fault) {
					s := *servers
					for range rng.IntN(3) { // 0: a steady poll
						i := rng.IntN(len(s))
						switch rng.IntN(7) {
						case 0:
							s[i].PublicNet.IPv4.IP = fmt.Sprintf("203.0.%d.%d", step, i%250)
						case 1:
							s[i].Status = []string{"running", "off", "starting"}[rng.IntN(3)]
						case 2:
							s[i].Location = hcloudtest.Locations[[]string{"fsn1", "nbg1"}[rng.IntN(2)]]
						case 3:
							s[i].Labels = []map[string]string{{"app": "web"}, {"app": "db"}, {"app": "web", "z": "1"}}[rng.IntN(3)]
						case 4:
							net := []int64{7, 8}[rng.IntN(2)]
							s[i].PrivateNet = hcloudtest.Server(i, s[i].Name, "running", "fsn1", nil, net).PrivateNet
						case 5:
							s = slices.Delete(s, i, i+1)
						case 6:
							s = slices.Insert(s, i, hcloudtest.Server(next, fmt.Sprintf("node-%d", next), "running", "fsn1", map[string]string{"app": "web"}, 7))
							next++
						}
					}
					*servers = s
				})
				fresh, _ := newProvider(t, api, opts)
				skippedBefore := cached.Skipped()
				got, err := cached.Peers(context.Background())
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				want, err := fresh.Peers(context.Background())
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if !platformtest.EqualSets(got, want) {
					t.Fatalf("step %d: the provider with remembered pages returned another set (%d peers, want %d)", step, len(got), len(want))
				}
				if s, w := cached.Skipped()-skippedBefore, fresh.Skipped(); s != w {
					t.Fatalf("step %d: %d servers skipped, want %d", step, s, w)
				}
			}
			if decoded, total := cached.decoded.Load(), cached.Requests(); decoded >= total {
				t.Errorf("%d pages decoded of %d requests: none was reused", decoded, total)
			}
		})
	}
}

// replay answers each URL as h answered it the first time: the fake
// encodes its pages on every request, and its CPU stays out of the
// benchmarks that way.
func replay(h http.Handler) http.Handler {
	var mu sync.Mutex
	seen := map[string]*httptest.ResponseRecorder{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		rec, ok := seen[r.URL.String()]
		if !ok {
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			seen[r.URL.String()] = rec
		}
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

// benchPoll measures a poll of n servers; changed makes every poll find
// one server changed since the last (two fakes, one server apart,
// answer poll and poll about).
func benchPoll(b *testing.B, n int, changed bool) {
	other := manyServers(n)
	other[n/2].PublicNet.IPv4.IP = "203.0.113.9"
	fakes := []http.Handler{replay(hcloudtest.New(b, manyServers(n), nil).Handler()), replay(hcloudtest.New(b, other, nil).Handler())}
	var which atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fakes[which.Load()%2].ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	p, err := New(Options{Token: hcloudtest.Token, APIURL: srv.URL + "/v1", IPVersion: v4, LabelSelector: "app=web"})
	if err != nil {
		b.Fatal(err)
	}
	var next func()
	if changed {
		next = func() { which.Add(1) }
	}
	platformtest.BenchPolls(b, n, p.Peers, p.decoded.Load, next)
}

// BenchmarkPollSteady is a steady poll of servers that did not change.
func BenchmarkPollSteady(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) { benchPoll(b, n, false) })
	}
}

// BenchmarkPollOneChanged is a poll that finds one server changed.
func BenchmarkPollOneChanged(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) { benchPoll(b, n, true) })
	}
}
