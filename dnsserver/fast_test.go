package dnsserver

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// orderedServer is the fixture without random order, so that the fast
// and the full path can be compared byte for byte; nothing else differs.
func orderedServer(t testing.TB, sets ...bridge.Set) *Server {
	t.Helper()
	// waiting is a configured service without a set: SERVFAIL on both paths.
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 3 * time.Second, Services: []string{"waiting"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.cfg.fixedOrder = true
	for _, set := range sets {
		if err := srv.Publish(context.Background(), set.Normalize()); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

// sameReply fails unless fast, the fast path's reply to query, is the full
// path's reply full, byte for byte. The one legal difference: for a query
// in mixed case the fast path's names compressed against the question
// take the question's letter case, while the full path writes them in
// lower case (miekg/dns compresses case-sensitively). Both are the same
// names (RFC 4343); that alone is normalised, by repacking both with
// every name in the records lower-cased.
func sameReply(t testing.TB, query, fast, full []byte) {
	t.Helper()
	if bytes.Equal(fast, full) {
		return
	}
	dump := func() string {
		f, g := new(dns.Msg), new(dns.Msg)
		f.Unpack(fast)
		g.Unpack(full)
		return fmt.Sprintf("fast path:\n%v\nfull path:\n%v", f, g)
	}
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil || len(q.Question) != 1 || q.Question[0].Name == strings.ToLower(q.Question[0].Name) {
		t.Fatalf("replies differ for a lower-case query\n%s", dump())
	}
	if !bytes.Equal(lowerNames(t, fast), lowerNames(t, full)) {
		t.Fatalf("replies differ beyond letter case\n%s", dump())
	}
}

// lowerNames repacks a reply with every domain name in its records in
// lower case; the question stays as asked.
func lowerNames(t testing.TB, wire []byte) []byte {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		t.Fatalf("reply does not unpack: %v", err)
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			h.Name = strings.ToLower(h.Name)
			switch rr := rr.(type) {
			case *dns.SRV:
				rr.Target = strings.ToLower(rr.Target)
			case *dns.PTR:
				rr.Ptr = strings.ToLower(rr.Ptr)
			case *dns.NS:
				rr.Ns = strings.ToLower(rr.Ns)
			case *dns.SOA:
				rr.Ns, rr.Mbox = strings.ToLower(rr.Ns), strings.ToLower(rr.Mbox)
			}
		}
	}
	m.Compress = true
	out, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareWithFull runs wire through the fast path and, when it answers,
// checks the answer against the full path's. It returns whether the fast
// path answered.
func compareWithFull(t testing.TB, srv *Server, wire []byte) bool {
	t.Helper()
	out := make([]byte, maxUDPSize)
	n, _ := srv.Snapshot().fastAnswer(wire, out, false)
	if n == 0 {
		return false
	}
	sameReply(t, wire, out[:n], srv.slowUDP(wire, nil))
	return true
}

// compareWithFullTCP is compareWithFull over TCP: the fast path's answer
// against the one ServeDNS packs when fastTCP declines.
func compareWithFullTCP(t testing.TB, srv *Server, wire []byte) bool {
	t.Helper()
	out := make([]byte, dns.MaxMsgSize)
	snap := srv.Snapshot()
	n, _ := snap.fastAnswer(wire, out, true)
	if n == 0 {
		return false
	}
	req := new(dns.Msg)
	if err := req.Unpack(wire); err != nil {
		t.Fatalf("the fast path answered a query that does not unpack: %v", err)
	}
	full, err := snap.answer(req, true).Pack()
	if err != nil {
		t.Fatal(err)
	}
	sameReply(t, wire, out[:n], full)
	return true
}

// TestFastMatchesSlow: whatever the fast path answers, the full path
// answers the same, byte for byte (sameReply).
func TestFastMatchesSlow(t *testing.T) {
	srv := orderedServer(t, fixtureSet(), bridge.Set{
		Service: bridge.Service{Topology: "worker", Name: "worker", Provider: "static", Port: 9000},
		Peers:   []bridge.Peer{peer("w1=10.0.1.1")},
	}, bridge.Set{Service: bridge.Service{Topology: "big", Name: "big", Provider: "static", Port: 1, PortName: "p"}, Peers: manyPeers(300)},
		// SRV answers that fit in UDP without all of their additional
		// records, which sets no TC: over TCP they come whole.
		bridge.Set{Service: bridge.Service{Topology: "mid", Name: "mid", Provider: "static", Port: 2}, Peers: manyPeers(20)},
		bridge.Set{Service: bridge.Service{Topology: "few", Name: "few", Provider: "static", Port: 3}, Peers: manyPeers(10)})
	names := []string{
		"myapp.peers.internal.", "MyApp.Peers.INTERNAL.", "node2.myapp.peers.internal.", "node1.myapp.peers.internal.",
		"_epmd._tcp.myapp.peers.internal.", "_tcp.myapp.peers.internal.", "peers.internal.", "ns.peers.internal.",
		"worker.peers.internal.", "w1.worker.peers.internal.", "1.0.0.10.in-addr.arpa.", "nope.peers.internal.", "example.com.",
		"big.peers.internal.", "_P._TCP.Big.peers.internal.", "mid.peers.internal.", "few.peers.internal.",
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR, dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeANY}
	fast, fastTCP := 0, 0
	for _, name := range names {
		for _, qtype := range types {
			for _, v := range []struct {
				edns, do, rd, cd bool
				size             uint16
			}{{}, {rd: true}, {edns: true, size: 1232}, {edns: true, do: true, rd: true, cd: true, size: 4096}, {edns: true, size: 512}, {edns: true, size: 1000}} {
				req := new(dns.Msg).SetQuestion(name, qtype)
				req.RecursionDesired, req.CheckingDisabled = v.rd, v.cd
				if v.edns {
					req.SetEdns0(v.size, v.do)
				}
				t.Run(fmt.Sprintf("%s/%s/%+v", name, dns.TypeToString[qtype], v), func(t *testing.T) {
					if compareWithFull(t, srv, pack(t, req)) {
						fast++
					}
					if compareWithFullTCP(t, srv, pack(t, req)) {
						fastTCP++
					}
				})
			}
		}
	}
	// The common queries must take the fast path at all.
	if fast < 50 || fastTCP < fast {
		t.Fatalf("only %d queries took the fast path, %d over TCP", fast, fastTCP)
	}
	out := make([]byte, maxUDPSize)
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"myapp.peers.internal.", dns.TypeA, false}, {"myapp.peers.internal.", dns.TypeSRV, true}, {"node2.myapp.peers.internal.", dns.TypeAAAA, true}, {"node1.myapp.peers.internal.", dns.TypeAAAA, false}, {"big.peers.internal.", dns.TypeSRV, true}} {
		req := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns {
			req.SetEdns0(1232, false)
		}
		if n, _ := srv.Snapshot().fastAnswer(pack(t, req), out, false); n == 0 {
			t.Errorf("%s %s (EDNS %v) took the slow path", q.name, dns.TypeToString[q.qtype], q.edns)
		}
		if n, _ := srv.Snapshot().fastAnswer(pack(t, req), make([]byte, dns.MaxMsgSize), true); n == 0 {
			t.Errorf("%s %s (EDNS %v) took the slow path over TCP", q.name, dns.TypeToString[q.qtype], q.edns)
		}
	}
}

func TestFastPathAllocatesNothing(t *testing.T) {
	snap := fixture(t).Snapshot()
	// A service's shuffled answer, and a peer's own name's, whose address
	// and OPT record are written into a shared packed answer.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"MyApp.peers.internal.", dns.TypeSRV}, {"node1.myapp.peers.internal.", dns.TypeA}, {"node2.myapp.peers.internal.", dns.TypeAAAA}} {
		req := new(dns.Msg).SetQuestion(q.name, q.qtype)
		req.SetEdns0(1232, true)
		wire, _ := req.Pack()
		out := make([]byte, maxUDPSize)
		if n, _ := snap.fastAnswer(wire, out, false); n == 0 {
			t.Fatalf("%s %s took the slow path", q.name, dns.TypeToString[q.qtype])
		}
		if allocs := testing.AllocsPerRun(1000, func() { snap.fastAnswer(wire, out, false) }); allocs != 0 {
			t.Fatalf("the fast path allocates %v times per query for %s", allocs, q.name)
		}
	}
	// Over TCP, a service's answer cut for UDP is packed whole once, on
	// the first query; after it, nothing.
	srv := orderedServer(t, bridge.Set{Service: myapp, Peers: manyPeers(100)})
	snap = srv.Snapshot()
	wire := pack(t, new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeSRV))
	out := make([]byte, dns.MaxMsgSize)
	n, _ := snap.fastAnswer(wire, out, true)
	if n == 0 {
		t.Fatal("SRV for 100 peers took the slow path over TCP")
	}
	if m := new(dns.Msg); m.Unpack(out[:n]) != nil || len(m.Answer) != 100 || len(m.Extra) != 100 || m.Truncated {
		t.Fatalf("SRV for 100 peers over TCP: %d bytes, not the whole answer", n)
	}
	if allocs := testing.AllocsPerRun(1000, func() { snap.fastAnswer(wire, out, true) }); allocs != 0 {
		t.Fatalf("the fast path allocates %v times per TCP query once packed", allocs)
	}
}

// TestFastTCPLeavesTooLargeAnswers: an answer too large even for TCP is
// never packed (the full path cuts it and warns), and a new snapshot
// packs its own TCP answers, not the last one's.
func TestFastTCPLeavesTooLargeAnswers(t *testing.T) {
	out := make([]byte, dns.MaxMsgSize)
	// 5,000 A records cannot fit (minLen); 3,000 SRV records might, and
	// do not once packed; 3,000 A records do.
	for _, q := range []struct {
		peers int
		qtype uint16
		fast  bool
	}{{5000, dns.TypeA, false}, {3000, dns.TypeSRV, false}, {3000, dns.TypeA, true}} {
		srv := orderedServer(t, bridge.Set{Service: myapp, Peers: manyPeers(q.peers)})
		wire := pack(t, new(dns.Msg).SetQuestion("myapp.peers.internal.", q.qtype))
		if n, _ := srv.Snapshot().fastAnswer(wire, out, true); (n != 0) != q.fast {
			t.Fatalf("%s for %d peers over TCP: fast path %v, want %v", dns.TypeToString[q.qtype], q.peers, n != 0, q.fast)
		}
	}

	srv := orderedServer(t)

	if err := srv.Publish(t.Context(), bridge.Set{Service: myapp, Peers: manyPeers(50)}.Normalize()); err != nil {
		t.Fatal(err)
	}
	wire := pack(t, new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA))
	if !compareWithFullTCP(t, srv, wire) {
		t.Fatal("A for 50 peers over TCP took the slow path")
	}
	if err := srv.Publish(t.Context(), bridge.Set{Service: myapp, Peers: manyPeers(60)}.Normalize()); err != nil {
		t.Fatal(err)
	}
	n, _ := srv.Snapshot().fastAnswer(wire, out, true)
	if m := new(dns.Msg); m.Unpack(out[:n]) != nil || len(m.Answer) != 60 {
		t.Fatalf("A over TCP after a change to 60 peers: %d bytes, not 60 records", n)
	}
}

// TestPeersSharePackedAnswers: the packed A and AAAA (NODATA) answers of
// a topology's peers' own names are a few shared ones, by the length of
// the name, not one per peer: a large topology's memory depends on it
// (BenchmarkRSS). The answers themselves are FuzzFastAnswer's to check.
func TestPeersSharePackedAnswers(t *testing.T) {
	srv := orderedServer(t, bridge.Set{Service: myapp, Peers: manyPeers(1000)})
	distinct := map[*packed]bool{}
	peers := 0
	for _, p := range srv.Snapshot().parts {
		for _, n := range p.names {
			if n.peer == nil {
				continue
			}
			peers++
			if n.fastA == nil || n.fastAAAA == nil {
				t.Fatalf("a peer's name without packed A and AAAA answers")
			}
			distinct[n.fastA], distinct[n.fastAAAA] = true, true
		}
	}
	// node0 to node999: three lengths, an A and a NODATA answer each.
	if peers != 1000 || len(distinct) != 6 {
		t.Fatalf("%d peers' names hold %d packed answers, want 6", peers, len(distinct))
	}
}

// FuzzFastAnswer: the byte-level parser never panics, and whatever it
// answers, the full path answers the same (sameReply).
func FuzzFastAnswer(f *testing.F) {
	srv := orderedServer(f, fixtureSet(), bridge.Set{Service: bridge.Service{Topology: "big", Name: "big", Provider: "static", Port: 1}, Peers: manyPeers(200)},
		bridge.Set{Service: bridge.Service{Topology: "mid", Name: "mid", Provider: "static", Port: 2}, Peers: manyPeers(20)},
		taskSet(0)) // peers with ports of their own

	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"myapp.peers.internal.", dns.TypeA, false}, {"myapp.peers.internal.", dns.TypeSRV, true}, {"NODE2.myapp.peers.internal.", dns.TypeTXT, true},
		{"Big.Peers.Internal.", dns.TypeSRV, true}, {"big.peers.internal.", dns.TypeA, false},
		{"tasks.peers.internal.", dns.TypeSRV, true}, {"_epmd._tcp.tasks.peers.internal.", dns.TypeSRV, false},
		{"waiting.peers.internal.", dns.TypeA, true}, {"p.Waiting.peers.internal.", dns.TypeAAAA, false},
		{"mid.peers.internal.", dns.TypeSRV, true}, {"mid.peers.internal.", dns.TypeSRV, false}} {
		req := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns {
			req.SetEdns0(4096, true)
			req.IsEdns0().Option = append(req.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}
		wire, _ := req.Pack()
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		compareWithFull(t, srv, wire)
		compareWithFullTCP(t, srv, wire)
	})
}
