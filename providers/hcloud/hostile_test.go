package hcloud

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/hcloud/hcloudtest"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestRedirectElsewhereRefused: an API that answers 307 to another host
// gets an error, not a listing: the other host, another Hetzner fake,
// sees no request, and none of its servers is published.
func TestRedirectElsewhereRefused(t *testing.T) {
	api := hcloudtest.New(t, manyServers(3), nil)
	stranger := hcloudtest.New(t, manyServers(9), nil)
	// The stranger answers whatever reaches it, credentials or not.
	open := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+hcloudtest.Token)
		stranger.Handler().ServeHTTP(w, r)
	})
	elsewhere := platformtest.NewElsewhere(t, open)
	p, _ := newProvider(t, api, Options{})
	loop, rec, _ := bridgetest.NewLoop("hcloud", p)
	loop.Poll(context.Background())
	if rec.Peers() != 3 {
		t.Fatalf("first poll published %d peers, want 3", rec.Peers())
	}
	api.SetHandler(http.HandlerFunc(elsewhere.Redirect))

	_, err := p.Peers(context.Background())
	if !errors.Is(err, platform.ErrRedirect) {
		t.Errorf("Peers = %v, want a refused redirect", err)
	}
	loop.Poll(context.Background())
	if rec.Peers() != 3 || loop.Status().Failures != 1 {
		t.Errorf("after the redirect %d peers published (%d failures), want the 3 kept and a failure", rec.Peers(), loop.Status().Failures)
	}
	if leaks := elsewhere.Leaks(hcloudtest.Token); len(leaks) > 0 {
		t.Errorf("the other host got credentials: %q", leaks)
	}
	if n := len(elsewhere.Requests()); n > 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
}

// TestEndlessBody: an API that streams without end costs a bounded read
// and an error that says so; the last set stays.
func TestEndlessBody(t *testing.T) {
	api := hcloudtest.New(t, manyServers(3), nil)
	p, _ := newProvider(t, api, Options{})
	loop, rec, _ := bridgetest.NewLoop("hcloud", p)
	loop.Poll(context.Background())

	item, err := json.Marshal(manyServers(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan int64, 1)
	api.SetHandler(platformtest.Endless("application/json", `{"servers":[`, string(item)+",", 512<<20, func(n int64) { sent <- n }))
	done := make(chan struct{})
	go func() { defer close(done); loop.Poll(context.Background()) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("a poll of an endless answer still runs after 60 s")
	}
	st := loop.Status()
	if rec.Peers() != 3 || st.Failures != 1 || !strings.Contains(st.LastError, "answer larger than 4 MiB") {
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

// TestMalformedListings: JSON that is no server listing, and pages that
// repeat each other, are no news, never an empty or doubled set.
func TestMalformedListings(t *testing.T) {
	servers := manyServers(100)
	page := func(items []schema.Server, n int, next *int) string {
		b, err := json.Marshal(struct {
			schema.ServerListResponse
			schema.MetaResponse
		}{
			schema.ServerListResponse{Servers: items},
			schema.MetaResponse{Meta: schema.Meta{Pagination: &schema.MetaPagination{
				Page: n, PerPage: 50, LastPage: 2, TotalEntries: 100, NextPage: deref(next),
			}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	two := 2
	for _, tc := range []struct {
		name         string
		fault        hcloudtest.Fault
		inconsistent bool
	}{
		{"another API's JSON", func(*http.Request, int) (int, string, http.Header) {
			return 200, `{"droplets":[],"links":{},"meta":{"total":0}}`, nil
		}, false},
		{"an empty object", func(*http.Request, int) (int, string, http.Header) { return 200, `{}`, nil }, false},
		{"servers null", func(*http.Request, int) (int, string, http.Header) { return 200, `{"servers":null}`, nil }, false},
		{"page 2 repeats page 1", func(_ *http.Request, n int) (int, string, http.Header) {
			if n == 2 {
				return 200, page(servers[:50], 2, nil), nil
			}
			return 200, page(servers[:50], 1, &two), nil
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := hcloudtest.New(t, servers, nil)
			p, _ := newProvider(t, api, Options{})
			loop, rec, _ := bridgetest.NewLoop("hcloud", p)
			loop.Poll(context.Background())
			if rec.Peers() != 100 {
				t.Fatalf("first poll published %d peers", rec.Peers())
			}
			api.Set(func(_ *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) { *f = tc.fault })
			_, err := p.Peers(context.Background())
			if err == nil || errors.Is(err, bridge.ErrInconsistentListing) != tc.inconsistent || !errors.Is(err, bridge.ErrTransient) {
				t.Errorf("Peers = %v, want a transient error (inconsistent listing: %v)", err, tc.inconsistent)
			}
			loop.Poll(context.Background())
			loop.Poll(context.Background())
			if st := loop.Status(); rec.Peers() != 100 || len(st.Peers) != 100 || st.Failures != 2 {
				t.Errorf("after two malformed answers %d peers published, %d failures; want the 100 kept", rec.Peers(), st.Failures)
			}
		})
	}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
