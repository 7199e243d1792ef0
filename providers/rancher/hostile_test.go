package rancher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestRedirectElsewhereRefused: a metadata service that answers 307 to
// another host gets an error, not a listing: the other host, another
// metadata service, sees no request, and none of its containers is
// published.
func TestRedirectElsewhereRefused(t *testing.T) {
	meta := newFakeMetadata(t)
	meta.load("/latest/self/service", "latest_self_service.json")
	stranger := newFakeMetadata(t)
	stranger.load("/latest/self/service", "latest_self_service.json")
	for i, c := range containersOf(stranger.doc("/latest/self/service"), "") {
		c := c.(map[string]any)
		c["name"], c["uuid"], c["primary_ip"] = fmt.Sprintf("stranger-%d", i), fmt.Sprintf("stranger-%d", i), fmt.Sprintf("192.0.2.%d", i+1)
	}
	elsewhere := platformtest.NewElsewhere(t, http.HandlerFunc(stranger.serve))
	p, _ := newProvider(t, meta, Options{AnyHealth: true})
	loop, rec, _ := bridgetest.NewLoop("rancher", p)
	loop.Poll(context.Background())
	if rec.Peers() != 2 {
		t.Fatalf("first poll published %d peers, want 2", rec.Peers())
	}
	meta.mu.Lock()
	meta.hook = elsewhere.Redirect
	meta.mu.Unlock()

	peers, err := p.Peers(context.Background())
	if !errors.Is(err, platform.ErrRedirect) {
		t.Errorf("Peers = %v (%v), want a refused redirect", err, bridgetest.Summary(peers))
	}
	loop.Poll(context.Background())
	if rec.Peers() != 2 || loop.Status().Failures != 1 {
		t.Errorf("after the redirect %d peers published (%d failures), want the 2 kept and a failure", rec.Peers(), loop.Status().Failures)
	}
	if n := len(elsewhere.Requests()); n > 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
}

// TestMalformedListings: a service answer without its containers list,
// and a container listed twice, are no news, never an empty or doubled
// set.
func TestMalformedListings(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fail         func(path string) (int, string)
		inconsistent bool
	}{
		{"an empty object", func(string) (int, string) { return 200, `{}` }, false},
		{"containers null", func(string) (int, string) { return 200, `{"name":"myapp","stack_name":"demo","containers":null}` }, false},
		{"a container twice", func(string) (int, string) {
			c := `{"name":"demo-myapp-1","uuid":"0a1b2c3d-0001-4e5f-8a9b-0c1d2e3f4a01","primary_ip":"10.42.10.11","state":"running","health_state":"healthy"}`
			return 200, `{"name":"myapp","stack_name":"demo","containers":[` + c + `,` + c + `]}`
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := newFakeMetadata(t)
			meta.load("/latest/self/service", "latest_self_service.json")
			p, _ := newProvider(t, meta, Options{AnyHealth: true})
			loop, rec, _ := bridgetest.NewLoop("rancher", p)
			loop.Poll(context.Background())
			if rec.Peers() != 2 {
				t.Fatalf("first poll published %d peers", rec.Peers())
			}
			meta.failWith(tc.fail)
			_, err := p.Peers(context.Background())
			if err == nil || errors.Is(err, bridge.ErrInconsistentListing) != tc.inconsistent || !errors.Is(err, bridge.ErrTransient) {
				t.Errorf("Peers = %v, want a transient error (inconsistent listing: %v)", err, tc.inconsistent)
			}
			loop.Poll(context.Background())
			loop.Poll(context.Background())
			if st := loop.Status(); rec.Peers() != 2 || len(st.Peers) != 2 || st.Failures != 2 {
				t.Errorf("after two malformed answers %d peers published, %d failures; want the 2 kept", rec.Peers(), st.Failures)
			}
		})
	}
}
