package ec2

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
)

// TestEndToEnd runs the fake EC2 through a provider, the running
// reconcile loop and the DNS server, and asks the real dig over loopback.
// It logs how long a new instance takes to reach DNS.
func TestEndToEnd(t *testing.T) {
	api := newFakeEC2(t, makeInstances(5))
	api.PageSize = 2 // three pages a poll
	filters, err := ParseFilters("tag:app=web")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newProvider(t, api, Options{Filters: filters})
	srv, addr := dnstest.Serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	const interval = 200 * time.Millisecond
	polls := &bridgetest.Polls{}
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "ec2", Port: 4000},
		Interval: interval, Provider: p, Publishers: []bridge.Publisher{srv}, Observer: polls,
	})
	looped := make(chan error, 1)
	go func() { looped <- loop.Run(ctx) }()
	defer func() { cancel(); <-looped }()

	// waitFor polls dig until the A answer is want, and returns how long
	// that took.
	waitFor := func(want []string) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			got := bridgetest.Dig(t, addr, "web.peers.internal", "A")
			if slices.Equal(got, want) {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("A answer %v, want %v", got, want)
			}
			time.Sleep(10 * time.Millisecond) // dig's own round trip paces this too
		}
	}
	waitFor([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"})

	txt := bridgetest.Dig(t, addr, "web-3.web.peers.internal", "TXT")
	if !slices.Contains(txt, `"id=i-00000000000000003"`) {
		t.Errorf("TXT of web-3: %q", txt)
	}
	srvRecords := bridgetest.Dig(t, addr, "web.peers.internal", "SRV")
	if len(srvRecords) != 5 || !strings.HasPrefix(srvRecords[0], "0 1 4000 web-0.web.peers.internal.") {
		t.Errorf("SRV %q", srvRecords)
	}

	// A new instance: DNS has it within a few intervals.
	api.Set(func(f *fakeEC2) { f.Instances = makeInstances(6) })
	took := waitFor([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"})
	t.Logf("a new instance was in DNS %s after it appeared in the API (poll interval %s, 3 pages a poll)",
		took.Round(time.Millisecond), interval)

	// Throttled: DNS keeps the last set.
	api.Set(func(f *fakeEC2) {
		f.Fail = func(int, int) (int, string) { return 503, errorXML("RequestLimitExceeded", "Request limit exceeded.") }
	})
	before := polls.Failures(bridge.FailureRateLimited)
	deadline := time.Now().Add(30 * time.Second)
	for polls.Failures(bridge.FailureRateLimited) == before {
		if time.Now().After(deadline) {
			t.Fatal("no throttled poll")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := bridgetest.Dig(t, addr, "web.peers.internal", "A"); len(got) != 6 {
		t.Fatalf("throttled: A answer %v, want the 6 kept", got)
	}

	// Recovered with an instance stopped: DNS follows.
	api.Set(func(f *fakeEC2) {
		f.Fail = nil
		f.Instances[0].State = "stopped"
	})
	waitFor([]string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"})
}

// BenchmarkRequestsPerPoll reports the API requests one poll costs for
// clusters of several sizes: one per 1,000 instances.
func BenchmarkRequestsPerPoll(b *testing.B) {
	for _, n := range []int{3, 100, 1000, 1001, 5000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			p, _ := newProvider(b, newFakeEC2(b, makeInstances(n)), Options{})
			for b.Loop() {
				peers, err := p.Peers(context.Background())
				if err != nil || len(peers) != n {
					b.Fatalf("%d peers, %v", len(peers), err)
				}
			}
			per := float64(p.Requests()) / float64(b.N)
			b.ReportMetric(per, "requests/op")
			if want := float64(max(1, (n+999)/1000)); per != want {
				b.Fatalf("%v requests per poll, want %v", per, want)
			}
		})
	}
}
