package droplet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestUnchangedPagesNotDecoded: a second listing of the same droplets
// decodes no page, and publishes the same peers; a droplet that changed
// costs the decoding of its page only, and its change is published.
func TestUnchangedPagesNotDecoded(t *testing.T) {
	api := droplettest.New(t, droplettest.MakeDroplets(t, 1000)) // 5 pages
	p, _ := newProvider(t, api, Options{Tag: "web"})
	first, err := p.Peers(context.Background())
	if err != nil || len(first) != 1000 || p.decoded.Load() != 5 {
		t.Fatalf("first poll: %d peers, %d pages decoded, %v; want 1000, 5", len(first), p.decoded.Load(), err)
	}
	second, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 5 {
		t.Fatalf("steady poll decoded %d pages (%v), want none", p.decoded.Load()-5, err)
	}
	if !platformtest.EqualSets(first, second) {
		t.Fatal("steady poll published another set")
	}

	api.Set(func(s *droplettest.State) { droplettest.SetAddrs(s.Droplets[700], "10.99.0.1", "", "") }) // page 4
	third, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 6 {
		t.Fatalf("one droplet changed: %d pages decoded (%v), want 1", p.decoded.Load()-5, err)
	}
	if got := platformtest.AddrOf(third, "node-700"); got != "[10.99.0.1]" {
		t.Errorf("the changed droplet is published with %s, want [10.99.0.1]", got)
	}
	if len(third) != 1000 {
		t.Errorf("%d peers after one changed, want 1000", len(third))
	}
}

// TestFailedListingKeepsPages: a listing that fails half way does not
// replace the pages remembered: the next listing compares with the last
// complete one, and decodes what changed since then.
func TestFailedListingKeepsPages(t *testing.T) {
	api := droplettest.New(t, droplettest.MakeDroplets(t, 1000))
	p, _ := newProvider(t, api, Options{Tag: "web"})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.Set(func(s *droplettest.State) {
		droplettest.SetAddrs(s.Droplets[10], "10.99.0.1", "", "") // page 1
		s.Fault = func(page int) (int, string, http.Header) {
			if page == 3 {
				return 503, `{"id":"service_unavailable","message":"down"}`, nil
			}
			return 0, "", nil
		}
	})
	if _, err := p.Peers(context.Background()); err == nil {
		t.Fatal("a listing with a failed page succeeded")
	}
	before := p.decoded.Load()
	api.Set(func(s *droplettest.State) { s.Fault = nil })
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Page 1 changed since the last complete listing: decoded again even
	// though the failed listing had decoded it already.
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("after a failed listing, %d pages decoded, want 1 (the changed page)", n)
	}
	if got := platformtest.AddrOf(peers, "node-10"); got != "[10.99.0.1]" {
		t.Errorf("node-10 published with %s, want [10.99.0.1]", got)
	}
}

// TestDuplicateAcrossCachedPage: a droplet that appears on a decoded page
// and on an unchanged (not decoded) one is still a listing whose pages
// disagree.
func TestDuplicateAcrossCachedPage(t *testing.T) {
	api := droplettest.New(t, droplettest.MakeDroplets(t, 400)) // 2 pages
	p, _ := newProvider(t, api, Options{Tag: "web"})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.Set(func(s *droplettest.State) { s.Droplets[300]["id"] = s.Droplets[5]["id"] }) // page 2 repeats page 1's
	before := p.decoded.Load()
	_, err := p.Peers(context.Background())
	if !errors.Is(err, bridge.ErrInconsistentListing) {
		t.Fatalf("Peers = %v, want an inconsistent listing", err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("%d pages decoded, want 1: page 1 was unchanged", n)
	}
}

// TestPagesPublishSameSet: over a sequence of random changes (addresses,
// status, tags, droplets added and removed, steady polls), a provider that
// reuses unchanged pages returns the same peers, and skips as many, as
// one that decodes every page.
func TestPagesPublishSameSet(t *testing.T) {
	droplets := droplettest.MakeDroplets(t, 500) // 3 pages
	api := droplettest.New(t, droplets)
	cached, _ := newProvider(t, api, Options{Tag: "web"})
	rng := rand.New(rand.NewPCG(30, 1))
	next := 1000 + len(droplets)
	for step := range 16 { // 16 random steps cover every kind of change; more only cost CI minutes under -race
		api.Set(func(s *droplettest.State) {
			for range rng.IntN(3) { // 0: a steady poll
				i := rng.IntN(len(s.Droplets))
				switch d := s.Droplets[i]; rng.IntN(6) {
				case 0:
					droplettest.SetAddrs(d, fmt.Sprintf("10.200.%d.%d", step, i%250), "", "")
				case 1:
					droplettest.SetAddrs(d, "", "198.51.100.1", "") // no private address: skipped
				case 2:
					d["status"] = []string{"active", "off", "new"}[rng.IntN(3)]
				case 3:
					d["tags"] = [][]any{{"web"}, {"db"}, {"web", "z"}}[rng.IntN(3)]
				case 4:
					s.Droplets = slices.Delete(s.Droplets, i, i+1)
				case 5:
					n := droplettest.Copy(t, d)
					n["id"], n["name"] = next, fmt.Sprintf("node-%d", next)
					next++
					s.Droplets = slices.Insert(s.Droplets, i, n)
				}
			}
		})
		fresh, _ := newProvider(t, api, Options{Tag: "web"})
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
			t.Fatalf("step %d: %d droplets skipped, want %d", step, s, w)
		}
	}
	if total, decoded := cached.Requests(), cached.decoded.Load(); decoded >= total {
		t.Errorf("%d pages decoded of %d listed: none was reused", decoded, total)
	}
}

// BenchmarkPollSteady is a steady poll of 10,000 droplets (50 pages) that
// did not change: ms-cpu/op is the process's CPU per poll, the fake
// API's serving of pages it encoded once included.
func BenchmarkPollSteady(b *testing.B) {
	api := droplettest.New(b, droplettest.MakeDroplets(b, 10_000))
	p, _ := newProvider(b, api, Options{Tag: "web"})
	platformtest.BenchPolls(b, 10_000, p.Peers, p.decoded.Load, nil)
}

// BenchmarkPollOneChanged is a poll of 10,000 droplets of which one
// changed since the last: two fakes, one droplet apart, answer poll and
// poll about, each with pages it encoded once.
func BenchmarkPollOneChanged(b *testing.B) {
	a := droplettest.New(b, droplettest.MakeDroplets(b, 10_000))
	other := droplettest.MakeDroplets(b, 10_000)
	droplettest.SetAddrs(other[5_000], "10.99.0.1", "", "")
	c := droplettest.New(b, other)
	var which atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if which.Load()%2 == 0 {
			a.ServeHTTP(w, r)
		} else {
			c.ServeHTTP(w, r)
		}
	}))
	b.Cleanup(srv.Close)
	p, _ := newProviderAt(b, srv.URL+"/", Options{Tag: "web"})
	platformtest.BenchPolls(b, 10_000, p.Peers, p.decoded.Load, func() { which.Add(1) })
}
