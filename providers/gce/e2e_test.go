package gce

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
	"github.com/peerbridge/peerbridge/providers/gce/gcetest"
)

// TestEndToEnd runs a Compute-shaped API, its metadata server and the
// real ADC path on loopback, through three providers (private addresses
// over every zone in three pages, public addresses in two zones, IPv6),
// their reconcile loops and the DNS server, and asks dig: the running
// instances that match, kept through every fault, and a new instance
// published within a poll or two.
func TestEndToEnd(t *testing.T) {
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	w := many(1001) // three aggregated pages
	w.Instances = append(w.Instances, world().Instances...)
	for _, in := range w.Instances[1001:] {
		in.Id += 100_000 // the world's ids next to many's
		in.Labels = map[string]string{"app": "db"}
	}
	fake := gcetest.New(t, w)
	adc(t, fake)
	private, logs := newProvider(t, fake, Env{GceFilter: "labels.app = web"})
	public, _ := newProvider(t, fake, Env{GceFilter: "labels.app = db", GceZones: "europe-west1-b,us-central1-a", GceAddress: "public"})
	v6, _ := newProvider(t, fake, Env{GceFilter: "labels.app = db", GceAddress: "ipv6"})

	srv, dnsAddr := dnstest.Serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	// A short interval, so that the time to a new record is measured in
	// polls; no assertion depends on it.
	const interval = 100 * time.Millisecond
	for name, p := range map[string]*Provider{"web": private, "db": public, "db6": v6} {
		loop := bridge.NewLoop(bridge.LoopConfig{
			Service:  bridge.Service{Topology: name, Name: name, Provider: "gce", Port: 4369},
			Interval: interval, Provider: p, Publishers: []bridge.Publisher{srv},
		})
		wg.Go(func() { loop.Run(ctx) })
	}

	host, port, _ := net.SplitHostPort(dnsAddr)
	digShort := func(name, qtype string) []string {
		t.Helper()
		out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "+tcp", "+time=2", "+tries=1", name, qtype).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
		}
		lines := strings.Fields(string(out))
		slices.Sort(lines)
		return lines
	}
	// until polls DNS (without dig, whose start-up would be measured too)
	// until name has want answers, and returns how long that took.
	until := func(name string, qtype uint16, want int) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			m := new(dns.Msg).SetQuestion(name, qtype)
			r, _, err := (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(m, dnsAddr)
			if err == nil && len(r.Answer) == want {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				n := -1
				if r != nil {
					n = len(r.Answer)
				}
				t.Fatalf("%s: %d answers after 30s, want %d (%v)", name, n, want, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	until("web.peers.internal.", dns.TypeA, 1001)
	until("db.peers.internal.", dns.TypeA, 3)
	until("db6.peers.internal.", dns.TypeAAAA, 4)
	// web-0 in europe-west1-b, db-0 and web-6 in us-central1-a; web-1
	// and web-5 are in other zones, the rest not running.
	if got, want := digShort("db.peers.internal", "A"), []string{"198.18.0.1", "198.18.0.5", "198.18.0.7"}; !slices.Equal(got, want) {
		t.Errorf("db A %v, want %v", got, want)
	}
	if got, want := digShort("db6.peers.internal", "AAAA"), []string{"2001:db8:1::", "2001:db8:2::", "2001:db8:5::", "fd20:1:2:3::6"}; !slices.Equal(got, want) {
		t.Errorf("db6 AAAA %v, want %v", got, want)
	}
	if got := digShort("node-7.web.peers.internal", "A"); !slices.Equal(got, []string{"10.0.7.2"}) {
		t.Errorf("node-7 A %v", got)
	}
	// TXT carries the provider's id: the instance id.
	if got := digShort("web-0.db.peers.internal", "TXT"); !slices.Equal(got, []string{`"id=101000"`}) {
		t.Errorf("web-0 TXT %v", got)
	}

	// Every fault in turn: DNS keeps the whole set through each.
	for _, fault := range []struct {
		name string
		set  func(w *gcetest.World)
	}{
		{"403 forbidden", func(w *gcetest.World) { w.Fault = always(403, gcetest.Forbidden, nil) }},
		{"429", func(w *gcetest.World) { w.Fault = always(429, gcetest.TooManyRequests, nil) }},
		{"403 rateLimitExceeded", func(w *gcetest.World) { w.Fault = always(403, gcetest.RateLimitExceeded, nil) }},
		{"500", func(w *gcetest.World) { w.Fault = always(500, gcetest.Backend, nil) }},
		{"a later page fails", func(w *gcetest.World) { w.Fault = later(503, gcetest.Backend) }},
		{"unreachable zone", func(w *gcetest.World) { w.Unreachable = []string{"asia-east1-a"} }},
		{"malformed", func(w *gcetest.World) { w.Fault = always(200, `{"items":`, nil) }},
	} {
		fake.Set(fault.set)
		failing, deadline := private.Requests(), time.Now().Add(30*time.Second)
		for private.Requests() < failing+2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // two failed polls: the fault is seen
		}
		if got := len(digShort("web.peers.internal", "A")); got != 1001 {
			t.Errorf("during %s web A has %d addresses, want the 1001 kept", fault.name, got)
		}
		if got := digShort("db.peers.internal", "A"); len(got) != 3 {
			t.Errorf("during %s db A %v, want the 3 kept", fault.name, got)
		}
		fake.Set(func(w *gcetest.World) { w.Fault, w.Unreachable = nil, nil })
	}

	// Recovery, and a new instance: the time until DNS answers with it.
	fake.Set(func(w *gcetest.World) {
		w.Instances = append(w.Instances, gcetest.Instance(1001, "node-1001", "us-central1-a", "RUNNING", map[string]string{"app": "web"}))
	})
	took := until("web.peers.internal.", dns.TypeA, 1002)
	t.Logf("a new instance was in DNS %s after it appeared in the API (1,002 instances, 3 pages a poll, interval %s, the loop backing off after the faults)", took.Round(time.Millisecond), interval)
	// Without a backoff: one more, at the plain interval.
	until("web.peers.internal.", dns.TypeA, 1002)
	fake.Set(func(w *gcetest.World) {
		w.Instances = append(w.Instances, gcetest.Instance(1002, "node-1002", "asia-east1-a", "RUNNING", map[string]string{"app": "web"}))
	})
	took = until("web.peers.internal.", dns.TypeA, 1003)
	t.Logf("a new instance was in DNS %s after it appeared in the API (interval %s)", took.Round(time.Millisecond), interval)
	if got := digShort("node-1002.web.peers.internal", "A"); !slices.Equal(got, []string{"10.4.2.2"}) {
		t.Errorf("node-1002 A %v", got)
	}

	for _, tok := range fake.Tokens() {
		if strings.Contains(logs.String(), tok) {
			t.Error("a token is in the logs")
		}
	}
}

// BenchmarkRequestsPerPoll reports the API requests one poll costs by
// fleet size: ⌈N/500⌉ through aggregatedList, the pages of each zone with
// GCE_ZONES.
func BenchmarkRequestsPerPoll(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		for _, zoneList := range []string{"", strings.Join(zones, ",")} {
			name := fmt.Sprintf("instances=%d/aggregated", n)
			want := (n + 499) / 500
			if zoneList != "" {
				name = fmt.Sprintf("instances=%d/zones=%d", n, len(zones))
				want = 0
				for range zones {
					want += max(1, (n/len(zones)+499)/500)
				}
			}
			b.Run(name, func(b *testing.B) {
				fake := gcetest.New(b, many(n))
				b.Setenv("HOME", b.TempDir())
				b.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
				b.Setenv("GCE_METADATA_HOST", fake.MetadataHost())
				opts, err := Configure(Env{GceApiUrl: fake.APIURL(), GceZones: zoneList})
				if err != nil {
					b.Fatal(err)
				}
				p, err := New(opts)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					peers, err := p.Peers(context.Background())
					if err != nil || len(peers) != n {
						b.Fatalf("%d peers, %v", len(peers), err)
					}
				}
				per := float64(p.Requests()) / float64(b.N)
				b.ReportMetric(per, "requests/op")
				if per != float64(want) {
					b.Fatalf("%.1f requests per poll, want %d", per, want)
				}
			})
		}
	}
}
