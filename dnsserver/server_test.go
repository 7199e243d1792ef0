package dnsserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

var myapp = bridge.Service{
	Topology: "myapp", Name: "myapp", Provider: "static",
	Port: 4369, PortName: "epmd", NodeBasename: "app",
}

// fixtureSet is myapp: two peers, one of them dual-stack, and a critical
// one.
func fixtureSet() bridge.Set {
	crit := peer("node3=10.0.0.3")
	crit.Health = bridge.HealthCritical
	return bridge.Set{Service: myapp, Peers: []bridge.Peer{
		peer("node1=10.0.0.1"), peer("node2=10.0.0.2,fd00::2"), crit,
	}}.Normalize()
}

func fixture(t testing.TB) *testServer {
	t.Helper()
	s := startServer(t, Config{})
	s.publish(t, fixtureSet())
	s.publish(t, bridge.Set{
		Service: bridge.Service{Topology: "worker", Name: "worker", Provider: "static", Port: 9000},
		Peers:   []bridge.Peer{peer("w1=10.0.1.1")},
	})
	return s
}

func TestAnswers(t *testing.T) {
	s := fixture(t)
	soa := fmt.Sprintf("peers.internal. 3 IN SOA ns.peers.internal. hostmaster.peers.internal. %d 3600 600 86400 3", s.Snapshot().Serial())
	apexSOA := strings.Replace(soa, " 3 IN", " 5 IN", 1)
	srvs := []string{
		"myapp.peers.internal. 5 IN SRV 0 1 4369 node1.myapp.peers.internal.",
		"myapp.peers.internal. 5 IN SRV 0 1 4369 node2.myapp.peers.internal.",
	}
	addrs := []string{
		"node1.myapp.peers.internal. 5 IN A 10.0.0.1",
		"node2.myapp.peers.internal. 5 IN A 10.0.0.2",
		"node2.myapp.peers.internal. 5 IN AAAA fd00::2",
	}
	tests := []struct {
		name         string
		qname        string
		qtype        uint16
		rcode        int
		noAA         bool
		answer, auth []string
		extra        []string
	}{
		{name: "service A", qname: "myapp.peers.internal.", qtype: dns.TypeA,
			answer: []string{"myapp.peers.internal. 5 IN A 10.0.0.1", "myapp.peers.internal. 5 IN A 10.0.0.2"}},
		{name: "service AAAA", qname: "myapp.peers.internal.", qtype: dns.TypeAAAA,
			answer: []string{"myapp.peers.internal. 5 IN AAAA fd00::2"}},
		{name: "service SRV with targets' addresses", qname: "myapp.peers.internal.", qtype: dns.TypeSRV,
			answer: srvs, extra: addrs},
		{name: "named port SRV", qname: "_epmd._tcp.myapp.peers.internal.", qtype: dns.TypeSRV,
			answer: []string{
				"_epmd._tcp.myapp.peers.internal. 5 IN SRV 0 1 4369 node1.myapp.peers.internal.",
				"_epmd._tcp.myapp.peers.internal. 5 IN SRV 0 1 4369 node2.myapp.peers.internal.",
			}, extra: addrs},
		{name: "peer A", qname: "node2.myapp.peers.internal.", qtype: dns.TypeA,
			answer: []string{"node2.myapp.peers.internal. 5 IN A 10.0.0.2"}},
		{name: "peer AAAA", qname: "node2.myapp.peers.internal.", qtype: dns.TypeAAAA,
			answer: []string{"node2.myapp.peers.internal. 5 IN AAAA fd00::2"}},
		{name: "peer TXT node names and id", qname: "node2.myapp.peers.internal.", qtype: dns.TypeTXT,
			answer: []string{
				`node2.myapp.peers.internal. 5 IN TXT "node=app@10.0.0.2"`,
				`node2.myapp.peers.internal. 5 IN TXT "node=app@fd00::2"`,
				`node2.myapp.peers.internal. 5 IN TXT "id=node2"`,
			}},
		{name: "TXT without basename", qname: "w1.worker.peers.internal.", qtype: dns.TypeTXT,
			answer: []string{`w1.worker.peers.internal. 5 IN TXT "id=w1"`}},
		{name: "query name case is ignored", qname: "NODE1.MyApp.Peers.Internal.", qtype: dns.TypeA,
			answer: []string{"node1.myapp.peers.internal. 5 IN A 10.0.0.1"}},
		{name: "second topology", qname: "worker.peers.internal.", qtype: dns.TypeSRV,
			answer: []string{"worker.peers.internal. 5 IN SRV 0 1 9000 w1.worker.peers.internal."},
			extra:  []string{"w1.worker.peers.internal. 5 IN A 10.0.1.1"}},
		{name: "PTR v4", qname: "1.0.0.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"1.0.0.10.in-addr.arpa. 5 IN PTR node1.myapp.peers.internal."}},
		{name: "PTR v6", qname: "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
			answer: []string{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR node2.myapp.peers.internal."}},
		{name: "PTR of no peer is refused", qname: "9.9.9.10.in-addr.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "PTR of a critical peer is refused", qname: "3.0.0.10.in-addr.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "A of a reverse name is refused", qname: "1.0.0.10.in-addr.arpa.", qtype: dns.TypeA,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "apex SOA", qname: "peers.internal.", qtype: dns.TypeSOA, answer: []string{apexSOA}},
		{name: "apex NS", qname: "peers.internal.", qtype: dns.TypeNS,
			answer: []string{"peers.internal. 5 IN NS ns.peers.internal."}},
		{name: "apex ANY is minimal", qname: "peers.internal.", qtype: dns.TypeANY, answer: []string{apexSOA}},
		{name: "peer ANY is one RRset", qname: "node2.myapp.peers.internal.", qtype: dns.TypeANY,
			answer: []string{"node2.myapp.peers.internal. 5 IN A 10.0.0.2"}},
		{name: "unknown name is NXDOMAIN with SOA", qname: "nope.peers.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, auth: []string{soa}},
		{name: "critical peer is NXDOMAIN", qname: "node3.myapp.peers.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, auth: []string{soa}},
		{name: "name below a peer is NXDOMAIN", qname: "x.node1.myapp.peers.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, auth: []string{soa}},
		{name: "known name, missing type is NODATA", qname: "node1.myapp.peers.internal.", qtype: dns.TypeAAAA,
			auth: []string{soa}},
		{name: "service MX is NODATA", qname: "myapp.peers.internal.", qtype: dns.TypeMX, auth: []string{soa}},
		{name: "empty non-terminal is NODATA", qname: "_tcp.myapp.peers.internal.", qtype: dns.TypeSRV,
			auth: []string{soa}},
		{name: "name server's name exists", qname: "ns.peers.internal.", qtype: dns.TypeA, auth: []string{soa}},
		{name: "outside the zone is refused", qname: "example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "suffix lookalike is refused", qname: "evilpeers.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "root is refused", qname: ".", qtype: dns.TypeNS, rcode: dns.RcodeRefused, noAA: true},
		{name: "zone transfer is refused", qname: "peers.internal.", qtype: dns.TypeAXFR,
			rcode: dns.RcodeRefused, noAA: true},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			if tc.qtype == dns.TypeAXFR && network == "udp" {
				continue // AXFR is a TCP query
			}
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				r := s.query(t, network, tc.qname, tc.qtype, 1232)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.Authoritative == tc.noAA {
					t.Errorf("AA = %v, want %v", r.Authoritative, !tc.noAA)
				}
				if r.RecursionAvailable || r.Truncated {
					t.Errorf("RA = %v, TC = %v, want neither", r.RecursionAvailable, r.Truncated)
				}
				// Names compare without case: compressed answers point at the
				// question, which keeps the client's letter case (0x20).
				check := func(section string, got []dns.RR, want []string) {
					if g, w := lower(texts(got)), lower(zone(t, want...)); !slices.Equal(g, w) {
						t.Errorf("%s:\n got %q\nwant %q", section, g, w)
					}
				}
				check("answer", r.Answer, tc.answer)
				check("authority", r.Ns, tc.auth)
				check("additional", r.Extra, tc.extra)
				if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != maxUDPSize {
					t.Errorf("OPT = %v, want UDP size %d", opt, maxUDPSize)
				}
			})
		}
	}
}

func TestProtocolErrors(t *testing.T) {
	s := fixture(t)
	t.Run("EDNS version 1 is BADVERS", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r := s.exchange(t, "udp", m)
		if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || len(r.Answer) != 0 {
			t.Fatalf("rcode %s, opt %v, %d answers; want BADVERS with OPT and no answer",
				dns.RcodeToString[r.Rcode], r.IsEdns0(), len(r.Answer))
		}
	})
	t.Run("DO bit is echoed", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
		m.SetEdns0(1232, true)
		if r := s.exchange(t, "udp", m); !r.IsEdns0().Do() {
			t.Fatal("DO bit not copied into the response (RFC 3225)")
		}
	})
	t.Run("no EDNS, no OPT", func(t *testing.T) {
		if r := s.query(t, "udp", "myapp.peers.internal.", dns.TypeA, 0); r.IsEdns0() != nil {
			t.Fatal("OPT in the answer to a query without EDNS")
		}
	})
	t.Run("CHAOS class is refused", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("version.bind.", dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		if r := s.exchange(t, "udp", m); r.Rcode != dns.RcodeRefused {
			t.Fatalf("rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("NOTIFY is not implemented", func(t *testing.T) {
		m := new(dns.Msg).SetNotify("peers.internal.")
		if r := s.exchange(t, "udp", m); r.Rcode != dns.RcodeNotImplemented {
			t.Fatalf("rcode %s, want NOTIMP", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("UPDATE is not implemented", func(t *testing.T) {
		m := new(dns.Msg).SetUpdate("peers.internal.")
		if r := s.exchange(t, "udp", m); r.Rcode != dns.RcodeNotImplemented {
			t.Fatalf("rcode %s, want NOTIMP", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("two questions are FORMERR", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
		m.Question = append(m.Question, dns.Question{Name: "worker.peers.internal.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		if r := s.exchange(t, "udp", m); r.Rcode != dns.RcodeFormatError {
			t.Fatalf("rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("garbage gets no answer and breaks nothing", func(t *testing.T) {
		conn, err := net.Dial("udp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, junk := range [][]byte{{0}, {1, 2, 3}, make([]byte, 12), []byte("GET / HTTP/1.1\r\n\r\n")} {
			if _, err := conn.Write(junk); err != nil {
				t.Fatal(err)
			}
		}
		if r := s.query(t, "udp", "myapp.peers.internal.", dns.TypeA, 0); len(r.Answer) != 2 {
			t.Fatalf("after garbage: %d answers, want 2", len(r.Answer))
		}
	})
}

func TestLargeAnswers(t *testing.T) {
	s := startServer(t, Config{})
	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(1000)})

	for _, tc := range []struct {
		name    string
		edns    uint16
		maxSize int
	}{
		{"no EDNS gets 512", 0, 512},
		{"EDNS 1232", 1232, 1232},
		{"EDNS 4096 still gets 1232", 4096, 1232},
		{"EDNS 100 gets 512", 100, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.query(t, "udp", "myapp.peers.internal.", dns.TypeA, tc.edns)
			if !r.Truncated {
				t.Error("TC not set on a truncated answer")
			}
			r.Compress = true // as the server sent it
			wire, err := r.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if len(wire) > tc.maxSize {
				t.Errorf("UDP answer is %d bytes, want at most %d", len(wire), tc.maxSize)
			}
		})
	}

	t.Run("all 1000 A over TCP", func(t *testing.T) {
		r := s.query(t, "tcp", "myapp.peers.internal.", dns.TypeA, 1232)
		if r.Truncated || len(r.Answer) != 1000 {
			t.Fatalf("TC = %v, %d answers; want all 1000", r.Truncated, len(r.Answer))
		}
	})
	t.Run("all 1000 SRV over TCP, addresses as they fit", func(t *testing.T) {
		r := s.query(t, "tcp", "myapp.peers.internal.", dns.TypeSRV, 1232)
		if r.Truncated || len(r.Answer) != 1000 {
			t.Fatalf("TC = %v, %d answers; want all 1000 without TC", r.Truncated, len(r.Answer))
		}
		if n := len(r.Extra) - 1; n < 500 || n >= 1000 { // OPT is one of them
			t.Errorf("%d additional addresses; want as many as fit in 64 KiB", n)
		}
	})
	t.Run("SRV over UDP truncates answers with TC", func(t *testing.T) {
		r := s.query(t, "udp", "myapp.peers.internal.", dns.TypeSRV, 1232)
		if !r.Truncated || len(r.Answer) >= 1000 {
			t.Fatalf("TC = %v with %d answers; want TC", r.Truncated, len(r.Answer))
		}
	})
	t.Run("SRV whose addresses do not fit over UDP has no TC", func(t *testing.T) {
		small := startServer(t, Config{})
		small.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(8)})
		r := small.query(t, "udp", "myapp.peers.internal.", dns.TypeSRV, 0)
		if r.Truncated || len(r.Answer) != 8 || len(r.Extra) >= 8 {
			t.Fatalf("TC = %v, %d answers, %d additional; want 8 answers, fewer addresses, no TC",
				r.Truncated, len(r.Answer), len(r.Extra))
		}
	})
	t.Run("client retries over TCP after TC", func(t *testing.T) {
		// miekg/dns's client does not retry; Go's resolver does, as libc's
		// and Erlang's :inet_res do.
		addrs, err := resolver(s.addr).LookupNetIP(context.Background(), "ip4", "myapp.peers.internal.")
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1000 {
			t.Fatalf("resolver got %d addresses, want 1000", len(addrs))
		}
	})
}

// resolver is Go's own resolver, pointed at the server; it tries UDP first
// and falls back to TCP on TC, as stub resolvers do.
func resolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

func TestGoResolver(t *testing.T) {
	s := fixture(t)
	r := resolver(s.addr)
	ctx := context.Background()

	addrs, err := r.LookupNetIP(ctx, "ip", "myapp.peers.internal.")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}
	if !slices.Equal(addrs, want) {
		t.Errorf("LookupNetIP = %v, want %v", addrs, want)
	}

	cname, srvs, err := r.LookupSRV(ctx, "epmd", "tcp", "myapp.peers.internal.")
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, srv := range srvs {
		targets = append(targets, fmt.Sprintf("%s:%d", srv.Target, srv.Port))
	}
	slices.Sort(targets)
	if cname != "_epmd._tcp.myapp.peers.internal." || !slices.Equal(targets, []string{"node1.myapp.peers.internal.:4369", "node2.myapp.peers.internal.:4369"}) {
		t.Errorf("LookupSRV = %s %v", cname, targets)
	}

	names, err := r.LookupAddr(ctx, "10.0.0.2")
	if err != nil || !slices.Equal(names, []string{"node2.myapp.peers.internal."}) {
		t.Errorf("LookupAddr = %v, %v", names, err)
	}

	_, err = r.LookupNetIP(ctx, "ip", "nope.peers.internal.")
	if dnsErr, ok := err.(*net.DNSError); !ok || !dnsErr.IsNotFound {
		t.Errorf("unknown name: err = %v, want not found", err)
	}
}

func TestDig(t *testing.T) {
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	s := fixture(t)
	host, port, _ := net.SplitHostPort(s.addr)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(dig, append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	short := func(args ...string) []string {
		out := strings.Split(strings.TrimSpace(run(append(args, "+short")...)), "\n")
		slices.Sort(out)
		return out
	}
	if got := short("myapp.peers.internal", "SRV"); !slices.Equal(got, []string{
		"0 1 4369 node1.myapp.peers.internal.", "0 1 4369 node2.myapp.peers.internal.",
	}) {
		t.Errorf("dig SRV +short = %q", got)
	}
	if got := short("myapp.peers.internal", "A", "+tcp"); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("dig A +tcp +short = %q", got)
	}
	if got := short("-x", "10.0.0.1"); !slices.Equal(got, []string{"node1.myapp.peers.internal."}) {
		t.Errorf("dig -x = %q", got)
	}
	out := run("nope.peers.internal", "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "flags: qr aa") {
		t.Errorf("dig of an unknown name:\n%s", out)
	}
	if out := run("example.com", "A"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("dig outside the zone:\n%s", out)
	}
}

func TestShuffledOrder(t *testing.T) {
	s := startServer(t, Config{})
	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(5)})
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		firsts := map[string]bool{}
		for range 50 {
			r := s.query(t, "udp", "myapp.peers.internal.", qtype, 0)
			if len(r.Answer) != 5 {
				t.Fatalf("%d answers, want 5", len(r.Answer))
			}
			firsts[r.Answer[0].String()] = true
		}
		// 50 answers starting with the same record by chance: (1/5)^49.
		if len(firsts) < 2 {
			t.Errorf("%s: 50 answers all start with %v; want shuffled", dns.TypeToString[qtype], firsts)
		}
	}
}

func TestSerialAndAtomicSwap(t *testing.T) {
	s := startServer(t, Config{})
	set := bridge.Set{Service: myapp, Peers: manyPeers(3)}
	s.publish(t, set)
	first := s.Snapshot()
	s.publish(t, set)
	if s.Snapshot() != first {
		t.Error("publishing an equal set replaced the snapshot")
	}
	set.Peers = manyPeers(4)
	s.publish(t, set)
	if got := s.Snapshot().Serial(); int32(got-first.Serial()) <= 0 {
		t.Errorf("serial %d after a change, was %d; want greater", got, first.Serial())
	}
}

// TestPublishSerial: the caller's serial is served, adopted at first
// whatever it is, and after that only when it grows; records that change
// under a serial that does not grow get the next one.
func TestPublishSerial(t *testing.T) {
	s := startServer(t, Config{})
	three := bridge.Set{Service: myapp, Peers: manyPeers(3)}
	four := bridge.Set{Service: myapp, Peers: manyPeers(4)}
	for _, step := range []struct {
		name   string
		serial uint32
		set    bridge.Set
		want   uint32
	}{
		{"first: adopted, even below the start serial", 7, three, 7},
		{"same set, same serial: nothing", 7, three, 7},
		{"a grown serial", 9, three, 9},
		{"new records, a grown serial", 12, four, 12},
		{"an older serial for the same records: ignored", 10, four, 12},
		{"new records under an older serial: the next one", 11, three, 13},
	} {
		if err := s.PublishSerial(context.Background(), step.serial, step.set); err != nil {
			t.Fatal(err)
		}
		if got := s.Snapshot().Serial(); got != step.want {
			t.Errorf("%s: serial %d, want %d", step.name, got, step.want)
		}
		if got := s.Sets()[myapp.Topology]; !got.Equal(step.set) {
			t.Errorf("%s: serving %d peers, want %d", step.name, len(got.Peers), len(step.set.Peers))
		}
	}
}

// TestSwapRace swaps snapshots while queries run: every answer must be one
// whole set, never a mix. Run with -race.
func TestSwapRace(t *testing.T) {
	s := startServer(t, Config{})
	setA := bridge.Set{Service: myapp, Peers: manyPeers(20)}
	setB := bridge.Set{Service: myapp, Peers: manyPeers(20)}
	for i := range setB.Peers {
		setB.Peers[i].Addrs = []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
	}
	s.publish(t, setA)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			s.publish(t, []bridge.Set{setA, setB}[i%2])
		}
	})
	var queries atomic.Int64
	for range 4 {
		wg.Go(func() {
			c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
			for ctx.Err() == nil {
				m := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
				r, _, err := c.Exchange(m, s.addr)
				if err != nil {
					t.Errorf("exchange: %v", err)
					return
				}
				queries.Add(1)
				if len(r.Answer) != 20 {
					t.Errorf("%d answers, want 20", len(r.Answer))
					return
				}
				mixed := 0
				for _, rr := range r.Answer {
					if rr.(*dns.A).A[0] == 192 {
						mixed++
					}
				}
				if mixed != 0 && mixed != 20 {
					t.Errorf("an answer mixes two peer sets: %d of 20 from the new one", mixed)
					return
				}
			}
		})
	}
	wg.Wait()
	if queries.Load() == 0 {
		t.Fatal("no query completed")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	srv, err := New(Config{Zone: "peers.internal", TTL: time.Second, NegativeTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()
	cancel() // possibly before the servers started: Serve must still return
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.Dial("tcp", ls.TCP.Addr().String()); err == nil {
		c.Close()
		t.Fatal("TCP listener still open after Serve returned")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Zone: "", TTL: time.Second},
		{Zone: ".", TTL: time.Second},
		{Zone: "a..b", TTL: time.Second},
		{Zone: "peers.internal", TTL: 1500 * time.Millisecond},
		{Zone: "peers.internal", NegativeTTL: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestStats(t *testing.T) {
	s := fixture(t)
	s.query(t, "udp", "myapp.peers.internal.", dns.TypeA, 0)
	s.query(t, "udp", "myapp.peers.internal.", dns.TypeA, 0)
	s.query(t, "tcp", "nope.peers.internal.", dns.TypeSRV, 0)
	s.query(t, "udp", "example.com.", dns.TypeMX, 0)
	big := startServer(t, Config{})
	big.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(200)})
	big.query(t, "udp", "myapp.peers.internal.", dns.TypeA, 0)

	got := map[QueryCount]bool{}
	for _, c := range s.Stats().Queries {
		got[c] = true
	}
	for _, want := range []QueryCount{
		{"udp", "A", "NOERROR", 2}, {"tcp", "SRV", "NXDOMAIN", 1}, {"udp", "other", "REFUSED", 1},
	} {
		if !got[want] {
			t.Errorf("counts %v lack %v", s.Stats().Queries, want)
		}
	}
	if udp, tcp := big.Stats().TruncatedUDP, big.Stats().TruncatedTCP; udp != 1 || tcp != 0 {
		t.Errorf("truncated udp %d tcp %d, want 1 and 0", udp, tcp)
	}
	var st stats
	if n := testing.AllocsPerRun(100, func() { st.count(true, dns.TypeSRV, dns.RcodeSuccess, true) }); n != 0 {
		t.Errorf("counting a query allocates %v times", n)
	}
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	slices.Sort(out)
	return out
}

// TestAnswerKeepsQueryCase: over UDP the packed answers point at the
// question, so a resolver that randomises letter case (0x20) sees its own
// case back. (miekg/dns's packer, on the slow path, writes the owner name
// in lower case; both are correct DNS.)
func TestAnswerKeepsQueryCase(t *testing.T) {
	s := fixture(t)
	r := s.query(t, "udp", "NODE1.MyApp.Peers.Internal.", dns.TypeA, 1232)
	if len(r.Answer) != 1 || r.Answer[0].Header().Name != "NODE1.MyApp.Peers.Internal." || r.Question[0].Name != "NODE1.MyApp.Peers.Internal." {
		t.Errorf("question %v, answer %v; want the query's letter case kept", r.Question, r.Answer)
	}
}
