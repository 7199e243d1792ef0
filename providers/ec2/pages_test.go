package ec2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// smallPages makes the fake answer pages of 100 instances.
func smallPages(f *fakeEC2) { f.PageSize = 100 }

// TestUnchangedPagesNotDecoded: a second listing of the same instances
// decodes no page (every answer has a requestId of its own) and
// publishes the same peers; an instance that changed costs the decoding
// of its page only, and its change is published.
func TestUnchangedPagesNotDecoded(t *testing.T) {
	api := newFakeEC2(t, makeInstances(400))
	api.Set(smallPages) // 4 pages
	p, _ := newProvider(t, api, Options{})
	first, err := p.Peers(context.Background())
	if err != nil || len(first) != 400 || p.decoded.Load() != 4 {
		t.Fatalf("first poll: %d peers, %d pages decoded, %v; want 400, 4", len(first), p.decoded.Load(), err)
	}
	second, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 4 {
		t.Fatalf("steady poll decoded %d pages (%v), want none", p.decoded.Load()-4, err)
	}
	if !platformtest.EqualSets(first, second) {
		t.Fatal("steady poll published another set")
	}
	api.Set(func(f *fakeEC2) { f.Instances[250].Private = "10.99.0.1" }) // page 3
	third, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 5 {
		t.Fatalf("one instance changed: %d pages decoded (%v), want 1", p.decoded.Load()-4, err)
	}
	if got := platformtest.AddrOf(third, "web-250"); got != "[10.99.0.1]" {
		t.Errorf("the changed instance is published with %s, want [10.99.0.1]", got)
	}
	if len(third) != 400 {
		t.Errorf("%d peers, want 400", len(third))
	}
}

// TestFailedListingKeepsPages: a listing that fails half way does not
// replace the pages remembered.
func TestFailedListingKeepsPages(t *testing.T) {
	api := newFakeEC2(t, makeInstances(400))
	api.Set(smallPages)
	p, _ := newProvider(t, api, Options{})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.Set(func(f *fakeEC2) {
		f.Instances[10].Private = "10.99.0.1" // page 1
		f.Fail = func(_, page int) (int, string) {
			if page == 3 {
				return 503, errorXML("Unavailable", "down")
			}
			return 0, ""
		}
	})
	if _, err := p.Peers(context.Background()); err == nil {
		t.Fatal("a listing with a failed page succeeded")
	}
	before := p.decoded.Load()
	api.Set(func(f *fakeEC2) { f.Fail = nil })
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("after a failed listing, %d pages decoded, want 1 (the changed page)", n)
	}
	if got := platformtest.AddrOf(peers, "web-10"); got != "[10.99.0.1]" {
		t.Errorf("web-10 published with %s, want [10.99.0.1]", got)
	}
}

// TestDuplicateAcrossCachedPage: an instance on a decoded page and on an
// unchanged one is still a listing whose pages disagree.
func TestDuplicateAcrossCachedPage(t *testing.T) {
	api := newFakeEC2(t, makeInstances(200))
	api.Set(smallPages) // 2 pages
	p, _ := newProvider(t, api, Options{})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.Set(func(f *fakeEC2) { f.Instances[150].ID = f.Instances[5].ID })
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
// that decodes every page.
func TestPagesPublishSameSet(t *testing.T) {
	api := newFakeEC2(t, makeInstances(250))
	api.Set(smallPages) // 3 pages
	cached, _ := newProvider(t, api, Options{})
	rng := rand.New(rand.NewPCG(30, 3))
	next := 250
	for step := range 16 { // 16 random steps cover every kind of change; more only cost CI minutes under -race
		api.Set(func(f *fakeEC2) {
			for range rng.IntN(3) { // 0: a steady poll
				i := rng.IntN(len(f.Instances))
				switch rng.IntN(6) {
				case 0:
					f.Instances[i].Private = fmt.Sprintf("10.200.%d.%d", step, i%250)
				case 1:
					f.Instances[i].Private = "" // skipped
				case 2:
					f.Instances[i].State = []string{"running", "stopped", "pending"}[rng.IntN(3)]
				case 3:
					f.Instances[i].Tags = [][2]string{{"Name", fmt.Sprintf("renamed-%d", step)}}
				case 4:
					f.Instances = slices.Delete(f.Instances, i, i+1)
				case 5:
					in := makeInstances(next + 1)[next]
					next++
					f.Instances = slices.Insert(f.Instances, i, in)
				}
			}
		})
		fresh, _ := newProvider(t, api, Options{})
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
			t.Fatalf("step %d: %d instances skipped, want %d", step, s, w)
		}
	}
	if decoded, total := cached.decoded.Load(), cached.Requests(); decoded >= total {
		t.Errorf("%d pages decoded of %d requests: none was reused", decoded, total)
	}
}

var requestID = regexp.MustCompile(`<requestId>[^<]*</requestId>`)

// replay answers each page as the fake answered it the first time, with
// a requestId of its own as EC2 gives every answer: the fake signs,
// filters and encodes on every request, and its CPU stays out of the
// benchmarks that way.
func replay(h http.Handler) http.Handler {
	var mu sync.Mutex
	var n atomic.Int64
	seen := map[string]*httptest.ResponseRecorder{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		key := form.Get("NextToken")
		mu.Lock()
		rec, ok := seen[key]
		if !ok {
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			seen[key] = rec
		}
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(requestID.ReplaceAll(rec.Body.Bytes(), fmt.Appendf(nil, "<requestId>replay-%d</requestId>", n.Add(1))))
	})
}

// benchPoll measures a poll of n instances (pages of 1,000); changed
// makes every poll find one instance changed since the last (two fakes,
// one instance apart, answer poll and poll about).
func benchPoll(b *testing.B, n int, changed bool) {
	other := makeInstances(n)
	other[n/2].Private = "10.99.0.1"
	fakes := []http.Handler{replay(newFakeEC2(b, makeInstances(n))), replay(newFakeEC2(b, other))}
	var which atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fakes[which.Load()%2].ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	awsEnv(b, srv.URL)
	p, err := NewContext(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var next func()
	if changed {
		next = func() { which.Add(1) }
	}
	platformtest.BenchPolls(b, n, p.Peers, p.decoded.Load, next)
}

// BenchmarkPollSteady is a steady poll of instances that did not change.
func BenchmarkPollSteady(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) { benchPoll(b, n, false) })
	}
}

// BenchmarkPollOneChanged is a poll that finds one instance changed.
func BenchmarkPollOneChanged(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) { benchPoll(b, n, true) })
	}
}
