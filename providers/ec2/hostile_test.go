package ec2

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/ec2/ec2test"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestRedirectElsewhereRefused: an endpoint that answers 307 to another
// host gets an error, not a listing. The SDK's own client follows a 307
// anywhere (stripping only Authorization and X-Amz-Security-Token); the
// other host, which answers EC2's reference example to anyone, sees no
// request, and its instance is not published.
func TestRedirectElsewhereRefused(t *testing.T) {
	sample, err := os.ReadFile("testdata/describe_instances.xml")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := platformtest.NewElsewhere(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.Write(sample)
	}))
	api := newFakeEC2(t, makeInstances(3))
	p, _ := newProvider(t, api, Options{})
	loop, rec, _ := bridgetest.NewLoop("ec2", p)
	loop.Poll(context.Background())
	if rec.Peers() != 3 {
		t.Fatalf("first poll published %d peers, want 3", rec.Peers())
	}
	api.Set(func(f *fakeEC2) { f.Hook = elsewhere.Redirect })

	peers, err := p.Peers(context.Background())
	if !errors.Is(err, platform.ErrRedirect) {
		t.Errorf("Peers = %v (%d peers), want a refused redirect", err, len(peers))
	}
	loop.Poll(context.Background())
	if rec.Peers() != 3 || loop.Status().Failures != 1 {
		t.Errorf("after the redirect %d peers published (%d failures), want the 3 kept and a failure", rec.Peers(), loop.Status().Failures)
	}
	if leaks := elsewhere.Leaks(testSecret, testSessionToken, testKeyID); len(leaks) > 0 {
		t.Errorf("the other host got credentials: %q", leaks)
	}
	if n := len(elsewhere.Requests()); n > 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
}

// TestEndlessBody: an endpoint that streams without end costs a bounded
// read and an error that says so; the last set stays.
func TestEndlessBody(t *testing.T) {
	api := newFakeEC2(t, makeInstances(3))
	p, _ := newProvider(t, api, Options{})
	// Reading 32 MiB through the SDK takes seconds under the race
	// detector on a loaded machine: the poll's timeout must not end it
	// before the cap does.
	rec := &bridgetest.Recorder{}
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "ec2"},
		Interval: time.Minute, Provider: p, Publishers: []bridge.Publisher{rec}, Timeout: 3 * time.Minute,
	})
	loop.Poll(context.Background())

	// One endless text node: the SDK's XML decoder walks items at a few
	// MB a second (slower under the race detector), text at disk speed.
	head := xml.Header + `<DescribeInstancesResponse xmlns="` + ec2Namespace + `"><requestId>`
	sent := make(chan int64, 1)
	api.Set(func(f *fakeEC2) {
		f.Hook = platformtest.Endless("text/xml;charset=UTF-8", head, "req-", 512<<20, func(n int64) { sent <- n })
	})
	done := make(chan struct{})
	go func() { defer close(done); loop.Poll(context.Background()) }()
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		t.Fatal("a poll of an endless answer still runs after 4 minutes")
	}
	st := loop.Status()
	if rec.Peers() != 3 || st.Failures != 1 || !strings.Contains(st.LastError, "answer larger than 32 MiB") {
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

// TestMalformedListings: XML without a reservationSet, and pages that
// repeat an instance, are no news, never an empty or doubled set.
func TestMalformedListings(t *testing.T) {
	instances := makeInstances(7)
	for _, tc := range []struct {
		name         string
		fail         func(n, page int) (int, string)
		inconsistent bool
	}{
		{"no reservationSet", func(int, int) (int, string) {
			return 200, xml.Header + `<DescribeInstancesResponse xmlns="` + ec2Namespace + `"><requestId>req-x</requestId></DescribeInstancesResponse>`
		}, false},
		{"another API's XML", func(int, int) (int, string) {
			return 200, xml.Header + `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name></ListBucketResult>`
		}, false},
		{"page 2 repeats page 1", func(_, page int) (int, string) {
			if page != 2 {
				return 0, ""
			}
			return 200, ec2test.PageXML("req-again", instances[:3], "page-token-6")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeEC2(t, instances)
			api.PageSize = 3
			p, _ := newProvider(t, api, Options{})
			loop, rec, _ := bridgetest.NewLoop("ec2", p)
			loop.Poll(context.Background())
			if rec.Peers() != 7 {
				t.Fatalf("first poll published %d peers", rec.Peers())
			}
			api.Set(func(f *fakeEC2) { f.Fail = tc.fail })
			_, err := p.Peers(context.Background())
			if err == nil || errors.Is(err, bridge.ErrInconsistentListing) != tc.inconsistent || !errors.Is(err, bridge.ErrTransient) {
				t.Errorf("Peers = %v, want a transient error (inconsistent listing: %v)", err, tc.inconsistent)
			}
			loop.Poll(context.Background())
			loop.Poll(context.Background())
			if st := loop.Status(); rec.Peers() != 7 || len(st.Peers) != 7 || st.Failures != 2 {
				t.Errorf("after two malformed answers %d peers published, %d failures; want the 7 kept", rec.Peers(), st.Failures)
			}
		})
	}
}
