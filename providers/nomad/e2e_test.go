package nomad

import (
	"context"
	"fmt"
	"log/slog"
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
	"github.com/peerbridge/peerbridge/providers/nomad/nomadtest"
)

// TestEndToEnd runs a fake Nomad through the provider, its reconcile
// loop (at a 30 s interval, so that only the blocking query can explain a
// fast change) and the DNS server, and asks dig: the registrations with
// the tags, one A record per shared node address, one SRV record per
// allocation; 20 allocations added one by one, each timed until DNS
// answers with it; a removal; an outage that keeps the set; and the token
// in no log line.
func TestEndToEnd(t *testing.T) {
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	srv := nomadtest.New(t)
	srv.Register(world()...)
	srv.ACL(map[string][]string{secret: {"default"}})
	var logs bridgetest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newProvider(t, srv, Options{Token: secret, Tags: []string{"http"}, Logger: log})

	dnsSrv, dnsAddr := dnstest.Serve(t)
	const interval = 30 * time.Second
	svc := bridge.Service{Topology: "web", Name: "web", Provider: "nomad"}
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service: svc, Interval: interval, Provider: p, Publishers: []bridge.Publisher{dnsSrv}, Logger: log,
		// A stopped allocation leaves on the listing its deregistration
		// wakes: the default (a second listing must miss it too, bridge's
		// tests) would wait for the 30 s interval.
		RemoveAfter: 1,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { loop.Run(ctx) })

	host, port, _ := net.SplitHostPort(dnsAddr)
	digShort := func(name, qtype string) []string {
		t.Helper()
		out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "+tcp", "+time=2", "+tries=1", name, qtype).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		return lines
	}
	// until asks DNS (with miekg/dns: dig's start-up would be measured
	// too) until the service has want SRV records, and returns how long
	// that took.
	until := func(want int) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(20 * time.Second)
		c := &dns.Client{Net: "tcp", Timeout: time.Second} // 20 SRV records do not fit 512 bytes
		for {
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion("web.peers.internal.", dns.TypeSRV), dnsAddr)
			if err == nil && len(r.Answer) == want {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %d SRV records after 20 s: %v %v", want, r, err)
			}
			time.Sleep(time.Millisecond)
		}
	}

	until(4)
	// aaaaaaaa and bbbbbbbb share a node: two peers, one address (the DNS
	// server's rule is to give it once in the RRset, RFC 2181 5.2).
	if got, want := digShort("web.peers.internal", "A"), []string{"10.0.0.1", "10.0.0.4"}; !slices.Equal(got, want) {
		t.Errorf("web A %q, want %q", got, want)
	}
	if got, want := digShort("web.peers.internal", "AAAA"), []string{"2001:db8::7"}; !slices.Equal(got, want) {
		t.Errorf("web AAAA %q, want %q", got, want)
	}
	if got := digShort("bbbbbbbb.web.peers.internal", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("bbbbbbbb A %q", got)
	}
	// Each allocation's SRV record carries its own port.
	srv4 := digShort("web.peers.internal", "SRV")
	want4 := []string{"0 1 20001 aaaaaaaa.web.peers.internal.", "0 1 20002 bbbbbbbb.web.peers.internal.",
		"0 1 20003 cccccccc.web.peers.internal.", "0 1 20004 dddddddd.web.peers.internal."}
	if !slices.Equal(srv4, want4) {
		t.Errorf("web SRV %q, want %q", srv4, want4)
	}
	// Each peer carries its own port for the publishers (Service.PortFor);
	// the SRV records show it where the DNS server reads PortFor.
	ports := map[string]uint16{}
	for _, peer := range loop.Status().Peers {
		ports[peer.Name] = svc.PortFor(peer)
	}
	if want := map[string]uint16{"aaaaaaaa": 20001, "bbbbbbbb": 20002, "cccccccc": 20003, "dddddddd": 20004}; fmt.Sprint(ports) != fmt.Sprint(want) {
		t.Errorf("ports %v, want %v", ports, want)
	}
	if got := digShort("cccccccc.web.peers.internal", "TXT"); !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "_nomad-task-cccccccc") }) {
		t.Errorf("cccccccc TXT %q, want the registration id", got)
	}

	// 20 allocations, one after another, each timed from its registration
	// until DNS answers with it. The 30 s interval would take minutes.
	var took []time.Duration
	for i := range 20 {
		awaitHeld(t, srv, 1) // the blocking query is open, as in steady state
		a := fmt.Sprintf("%08x", 0xa0000000+i)
		start := time.Now()
		srv.Register(reg(a, "default", "dc1", fmt.Sprintf("10.0.1.%d", i+1), 21000+i, "http"))
		until(5 + i)
		took = append(took, time.Since(start))
	}
	sorted := slices.Sorted(slices.Values(took))
	t.Logf("a new allocation reached DNS in min %s, median %s, max %s over %d additions (poll interval %s)",
		sorted[0].Round(time.Microsecond), ((sorted[9] + sorted[10]) / 2).Round(time.Microsecond),
		sorted[len(sorted)-1].Round(time.Microsecond), len(sorted), interval)
	for i, d := range took {
		if d > 5*time.Second {
			t.Errorf("addition %d took %s", i, d)
		}
	}
	if got := digShort("a0000013.web.peers.internal", "A"); !slices.Equal(got, []string{"10.0.1.20"}) {
		t.Errorf("the last addition's A %q", got)
	}

	// An allocation stops: gone from DNS as fast.
	awaitHeld(t, srv, 1)
	srv.Deregister(reg("dddddddd", "default", "dc2", "10.0.0.4", 0).ID)
	until(23)
	if got := digShort("web.peers.internal", "A"); slices.Contains(got, "10.0.0.4") {
		t.Errorf("a stopped allocation is still in DNS: %q", got)
	}

	// The token is revoked while the blocking query is open, and an
	// allocation registers: the wake's poll fails (credentials), and DNS
	// keeps the set.
	awaitHeld(t, srv, 1)
	srv.ACL(map[string][]string{"someone-else": {"*"}})
	srv.Register(reg("ffff0000", "default", "dc1", "10.0.9.9", 29999, "http"))
	deadline := time.Now().Add(20 * time.Second)
	for loop.Status().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the revoked token's poll did not fail")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(digShort("web.peers.internal", "SRV")); got != 23 {
		t.Errorf("after the failed poll %d SRV records, want the 23 kept", got)
	}
	if st := loop.Status(); !strings.Contains(st.LastError, "credentials") || strings.Contains(st.LastError, secret) {
		t.Errorf("status error %q", st.LastError)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the token is in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "credentials") {
		t.Errorf("no credentials failure logged:\n%s", logs.String())
	}
}
