package droplet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestRedirectElsewhereRefused: an API that answers 307 to another host
// gets an error, not a listing: the other host, another DigitalOcean fake
// that would accept the token, sees no request, and none of its droplets
// is published.
func TestRedirectElsewhereRefused(t *testing.T) {
	api := droplettest.New(t, droplettest.MakeDroplets(t, 3))
	stranger := droplettest.New(t, droplettest.MakeDroplets(t, 9))
	elsewhere := platformtest.NewElsewhere(t, http.HandlerFunc(stranger.ServeHTTP))
	p, _ := newProvider(t, api, Options{})
	loop, rec, polls := bridgetest.NewLoop("droplet", p)
	loop.Poll(context.Background())
	if rec.Peers() != 3 {
		t.Fatalf("first poll published %d peers, want 3", rec.Peers())
	}
	api.Set(func(f *droplettest.State) { f.Hook = elsewhere.Redirect })

	_, err := p.Peers(context.Background())
	if !errors.Is(err, platform.ErrRedirect) {
		t.Errorf("Peers = %v, want a refused redirect", err)
	}
	loop.Poll(context.Background())
	if rec.Peers() != 3 || polls.Failures(bridge.FailureTransient) != 1 || loop.Status().Failures != 1 {
		t.Errorf("after the redirect %d peers published (%d failures), want the 3 kept and a failure", rec.Peers(), loop.Status().Failures)
	}
	if leaks := elsewhere.Leaks(droplettest.Token); len(leaks) > 0 {
		t.Errorf("the other host got credentials: %q", leaks)
	}
	if n := len(elsewhere.Requests()); n > 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
	if strings.Contains(loop.Status().LastError, droplettest.Token) {
		t.Errorf("the token is in the error: %s", loop.Status().LastError)
	}
}

// TestEndlessBody: an API that streams without end costs a bounded read
// and an error that says so; the last set stays.
func TestEndlessBody(t *testing.T) {
	api := droplettest.New(t, droplettest.MakeDroplets(t, 3))
	p, _ := newProvider(t, api, Options{})
	loop, rec, _ := bridgetest.NewLoop("droplet", p)
	loop.Poll(context.Background())

	item, err := json.Marshal(droplettest.MakeDroplets(t, 1)[0])
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan int64, 1)
	api.Set(func(f *droplettest.State) {
		f.Hook = platformtest.Endless("application/json", `{"droplets":[`, string(item)+",", 512<<20, func(n int64) { sent <- n })
	})
	done := make(chan struct{})
	go func() { defer close(done); loop.Poll(context.Background()) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("a poll of an endless answer still runs after 60 s")
	}
	st := loop.Status()
	if rec.Peers() != 3 || st.Failures != 1 || !strings.Contains(st.LastError, "answer larger than 13 MiB") {
		t.Errorf("after an endless answer %d peers published, error %q; want the 3 kept and the cap named", rec.Peers(), st.LastError)
	}
	select {
	case n := <-sent:
		if n >= 512<<20 {
			t.Errorf("the client read the whole %d bytes", n)
		}
	case <-time.After(30 * time.Second):
		t.Error("the client did not hang up on the endless answer")
	}
}

// TestMalformedListings: a page without its droplets list, and pages that
// repeat each other, are no news, never an empty or doubled set.
func TestMalformedListings(t *testing.T) {
	droplets := droplettest.MakeDroplets(t, 250)
	page1 := func() string {
		b, err := json.Marshal(map[string]any{
			"droplets": droplets[:200],
			"links":    map[string]any{"pages": map[string]any{"next": "https://api.digitalocean.com/v2/droplets?page=2&per_page=200"}},
			"meta":     map[string]any{"total": 250},
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}()
	for _, tc := range []struct {
		name         string
		fail         func(page int) (int, string, http.Header)
		inconsistent bool
	}{
		{"no droplets key", func(int) (int, string, http.Header) { return 200, `{}`, nil }, false},
		{"droplets null", func(int) (int, string, http.Header) { return 200, `{"droplets":null,"meta":{"total":0}}`, nil }, false},
		{"empty body", func(int) (int, string, http.Header) { return 200, ``, nil }, false},
		{"a later page without droplets", func(page int) (int, string, http.Header) {
			if page == 2 {
				return 200, `{"links":{},"meta":{"total":250}}`, nil
			}
			return 0, "", nil
		}, false},
		{"page 2 repeats page 1", func(page int) (int, string, http.Header) {
			if page == 2 {
				b, _ := json.Marshal(map[string]any{"droplets": droplets[:200], "meta": map[string]any{"total": 250}})
				return 200, string(b), nil
			}
			return 200, page1, nil
		}, true},
		{"the total changes between pages", func(page int) (int, string, http.Header) {
			if page == 2 {
				b, _ := json.Marshal(map[string]any{"droplets": droplets[200:], "meta": map[string]any{"total": 249}})
				return 200, string(b), nil
			}
			return 0, "", nil
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := droplettest.New(t, droplets)
			p, _ := newProvider(t, api, Options{})
			loop, rec, _ := bridgetest.NewLoop("droplet", p)
			loop.Poll(context.Background())
			if rec.Peers() != 250 {
				t.Fatalf("first poll published %d peers", rec.Peers())
			}
			api.Set(func(f *droplettest.State) { f.Fault = tc.fail })
			_, err := p.Peers(context.Background())
			if err == nil || errors.Is(err, bridge.ErrInconsistentListing) != tc.inconsistent || !errors.Is(err, bridge.ErrTransient) {
				t.Errorf("Peers = %v, want a transient error (inconsistent listing: %v)", err, tc.inconsistent)
			}
			// Twice: two bad answers in a row must not empty the set.
			loop.Poll(context.Background())
			loop.Poll(context.Background())
			if st := loop.Status(); rec.Peers() != 250 || len(st.Peers) != 250 || st.Failures != 2 {
				t.Errorf("after two malformed answers %d peers published, %d failures; want the 250 kept", rec.Peers(), st.Failures)
			}
		})
	}
}

// TestRetryAfterCapped: a 429 asking for a wait in the year 9999, of ten
// years, or until a reset in the year 9999, makes the loop wait an hour
// at most, and a running loop does not spin on it.
func TestRetryAfterCapped(t *testing.T) {
	year9999 := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	for _, header := range []http.Header{
		{"Retry-After": {"Fri, 31 Dec 9999 23:59:59 GMT"}},
		{"Retry-After": {"315360000"}},
		{"Retry-After": {"99999999999999"}},
		{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {strconv.FormatInt(year9999.Unix(), 10)}},
	} {
		api := droplettest.New(t, droplettest.MakeDroplets(t, 3))
		api.Set(func(f *droplettest.State) {
			f.Fault = func(int) (int, string, http.Header) {
				return http.StatusTooManyRequests, `{"id":"too_many_requests","message":"API Rate limit exceeded."}`, header
			}
		})
		p, _ := newProvider(t, api, Options{})
		loop, _, _ := bridgetest.NewLoop("droplet", p)
		if next, retryAfter := loop.Poll(context.Background()); retryAfter <= 0 || retryAfter > bridge.MaxRetryAfter || next < retryAfter || next > 2*bridge.MaxRetryAfter {
			t.Errorf("%v: next poll in %s, retry-after %s; want at most %s", header, next, retryAfter, bridge.MaxRetryAfter)
		}
	}

	// The attack as it was measured: a running loop against the 429.
	var requests atomic.Int64
	api := droplettest.New(t, droplettest.MakeDroplets(t, 3))
	api.Set(func(f *droplettest.State) {
		f.Fault = func(int) (int, string, http.Header) {
			requests.Add(1)
			return http.StatusTooManyRequests, `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
				http.Header{"Retry-After": {"Fri, 31 Dec 9999 23:59:59 GMT"}}
		}
	})
	p, _ := newProvider(t, api, Options{})
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "droplet"},
		Interval: 100 * time.Millisecond, Provider: p,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); loop.Run(ctx) }()
	// An observation window, not a synchronisation: a spinning loop
	// sends thousands of requests in it, a waiting one a single one.
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	if n := requests.Load(); n < 1 || n > 5 {
		t.Errorf("%d requests in 2 s against a 429 with a retry-after in the year 9999, want a handful", n)
	}
}

// TestMetadataRedirectElsewhereRefused: the metadata service's answer
// decides which droplet is left out; a redirect to another host is no
// answer, and that host sees no request.
func TestMetadataRedirectElsewhereRefused(t *testing.T) {
	elsewhere := platformtest.NewElsewhere(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Replace(droplettest.Fixture(t, "metadata_v1.json"), "7473395", "1001", 1))
	}))
	meta := httptest.NewServer(http.HandlerFunc(elsewhere.Redirect))
	defer meta.Close()
	p, _ := newProvider(t, droplettest.New(t, droplettest.MakeDroplets(t, 3)), Options{ExcludeSelf: true, MetadataURL: meta.URL + "/metadata/v1/"})
	peers, err := p.Peers(context.Background())
	if err != nil || len(peers) != 3 {
		t.Errorf("%d peers, %v; want all 3: the other host's answer excluded one", len(peers), err)
	}
	if n := len(elsewhere.Requests()); n > 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
}
