package hcloud

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
	"github.com/peerbridge/peerbridge/providers/hcloud/hcloudtest"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// TestEndToEnd runs a Hetzner-shaped API on loopback through two
// providers, their reconcile loops and the DNS server, and asks dig: the
// running servers that match the selector, in the private network (A)
// and on their public addresses (A and AAAA), kept through a fault, and a
// new server published within a poll or two.
func TestEndToEnd(t *testing.T) {
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	servers, networks := world()
	api := hcloudtest.New(t, servers, networks)
	private, _ := newProvider(t, api, Options{LabelSelector: "app=web", Network: "cluster"})
	public, _ := newProvider(t, api, Options{LabelSelector: "app=web,env=prod", IPVersion: platform.IPVersion{V4: true, V6: true}})

	srv, dnsAddr := dnstest.Serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	// A short interval, so that the time to a new record is measured
	// in polls; a test may never depend on it.
	const interval = 100 * time.Millisecond
	for name, p := range map[string]*Provider{"web": private, "pub": public} {
		loop := bridge.NewLoop(bridge.LoopConfig{
			Service:  bridge.Service{Topology: name, Name: name, Provider: "hcloud", Port: 4369},
			Interval: interval, Provider: p, Publishers: []bridge.Publisher{srv},
		})
		wg.Go(func() { loop.Run(ctx) })
	}

	host, port, _ := net.SplitHostPort(dnsAddr)
	digShort := func(name, qtype string) []string {
		t.Helper()
		out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "+time=2", "+tries=1", name, qtype).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
		}
		lines := strings.Fields(string(out))
		slices.Sort(lines)
		return lines
	}
	// until polls DNS (without dig, whose start-up would be measured
	// too) until name answers want addresses, and returns how long it took.
	until := func(name string, qtype uint16, want int) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(new(dns.Msg).SetQuestion(name, qtype), dnsAddr)
			if err == nil && len(r.Answer) == want {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %d answers after 30s: %v %v", name, want, r, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	until("web.peers.internal.", dns.TypeA, 2)
	until("pub.peers.internal.", dns.TypeAAAA, 2)
	if got, want := digShort("web.peers.internal", "A"), []string{"10.7.0.2", "10.7.0.3"}; !slices.Equal(got, want) {
		// web-4 is in no cluster network; db-0 is no web server.
		t.Errorf("web A %v, want %v", got, want)
	}
	if got, want := digShort("pub.peers.internal", "A"), []string{"198.18.0.1", "198.18.0.2"}; !slices.Equal(got, want) {
		t.Errorf("pub A %v, want %v", got, want)
	}
	if got, want := digShort("pub.peers.internal", "AAAA"), []string{"2001:db8:1::1", "2001:db8:2::1"}; !slices.Equal(got, want) {
		t.Errorf("pub AAAA %v, want %v", got, want)
	}
	if got := digShort("web-1.web.peers.internal", "TXT"); !slices.Contains(got, `"id=1001"`) {
		t.Errorf("web-1 TXT %v", got)
	}

	// The API fails for a while: DNS keeps the last good set.
	api.Set(func(_ *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) {
		*f = func(*http.Request, int) (int, string, http.Header) {
			return 503, hcloudtest.Error("service_error", "unavailable"), nil
		}
	})
	failing, deadline := private.Requests(), time.Now().Add(30*time.Second)
	for private.Requests() < failing+3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // three failed requests: the outage is seen
	}
	if got := digShort("web.peers.internal", "A"); len(got) != 2 {
		t.Errorf("during the outage web A %v, want the 2 kept", got)
	}

	// Recovery, and a new server: the time until DNS answers with it.
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) {
		*f = nil
		*servers = append(*servers, hcloudtest.Server(8, "web-8", "running", "fsn1", map[string]string{"app": "web", "env": "prod"}, 7))
	})
	took := until("web.peers.internal.", dns.TypeA, 3)
	t.Logf("a new server was in DNS %s after it appeared in the API (poll interval %s, the loop backing off after the outage)", took.Round(time.Millisecond), interval)
	if got, want := digShort("web.peers.internal", "A"), []string{"10.7.0.10", "10.7.0.2", "10.7.0.3"}; !slices.Equal(got, want) {
		t.Errorf("after scale-up web A %v, want %v", got, want)
	}

	// Without the outage's backoff: one more server, at the plain interval.
	until("pub.peers.internal.", dns.TypeAAAA, 3)
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, _ *hcloudtest.Fault) {
		*servers = append(*servers, hcloudtest.Server(10, "web-10", "running", "nbg1", map[string]string{"app": "web", "env": "prod"}, 7))
	})
	took = until("pub.peers.internal.", dns.TypeAAAA, 4)
	t.Logf("a new server was in DNS %s after it appeared in the API (poll interval %s)", took.Round(time.Millisecond), interval)
	if got := digShort("web-10.pub.peers.internal", "AAAA"); !slices.Equal(got, []string{"2001:db8:b::1"}) {
		t.Errorf("web-10 AAAA %v", got)
	}
}

// BenchmarkRequestsPerPoll reports the API requests one poll costs for
// clusters of several sizes: ⌈N/50⌉.
func BenchmarkRequestsPerPoll(b *testing.B) {
	for _, n := range []int{3, 50, 51, 200, 1000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			p, _ := newProvider(b, hcloudtest.New(b, manyServers(n), nil), Options{})
			for b.Loop() {
				peers, err := p.Peers(context.Background())
				if err != nil || len(peers) != n {
					b.Fatalf("%d peers, %v", len(peers), err)
				}
			}
			per := float64(p.Requests()) / float64(b.N)
			b.ReportMetric(per, "requests/op")
			if want := float64((n + 49) / 50); per != want {
				b.Fatalf("%.1f requests per poll, want %.0f", per, want)
			}
		})
	}
}
