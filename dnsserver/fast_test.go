package dnsserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestFastMatchesSlow: whatever the fast path answers, the slow path
// answers the same, record for record (shuffled sets compared as sets).
func TestFastMatchesSlow(t *testing.T) {
	s := fixture(t)
	snap := s.Snapshot()
	names := []string{
		"myapp.peers.internal.", "MyApp.Peers.INTERNAL.", "node2.myapp.peers.internal.", "node1.myapp.peers.internal.",
		"_epmd._tcp.myapp.peers.internal.", "_tcp.myapp.peers.internal.", "peers.internal.", "ns.peers.internal.",
		"worker.peers.internal.", "w1.worker.peers.internal.", "1.0.0.10.in-addr.arpa.", "nope.peers.internal.", "example.com.",
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR, dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeANY}
	out := make([]byte, maxUDPSize)
	fast := 0
	for _, name := range names {
		for _, qtype := range types {
			for _, v := range []struct {
				edns, do, rd, cd bool
				size             uint16
			}{{}, {rd: true}, {edns: true, size: 1232}, {edns: true, do: true, rd: true, cd: true, size: 4096}, {edns: true, size: 512}} {
				req := new(dns.Msg).SetQuestion(name, qtype)
				req.RecursionDesired, req.CheckingDisabled = v.rd, v.cd
				if v.edns {
					req.SetEdns0(v.size, v.do)
				}
				wire, err := req.Pack()
				if err != nil {
					t.Fatal(err)
				}
				n, _ := snap.fastAnswer(wire, out)
				if n == 0 {
					continue
				}
				fast++
				got := new(dns.Msg)
				if err := got.Unpack(out[:n]); err != nil {
					t.Fatalf("%s %s: fast answer does not unpack: %v", name, dns.TypeToString[qtype], err)
				}
				want := snap.answer(req, false)
				label := name + " " + dns.TypeToString[qtype]
				if got.Id != req.Id || got.MsgHdr != want.MsgHdr {
					t.Errorf("%s %+v: header %+v, slow path %+v", label, v, got.MsgHdr, want.MsgHdr)
				}
				if got.Question[0] != req.Question[0] {
					t.Errorf("%s: question %v, asked %v", label, got.Question[0], req.Question[0])
				}
				for _, sec := range []struct {
					name      string
					got, want []dns.RR
				}{{"answer", got.Answer, want.Answer}, {"authority", got.Ns, want.Ns}, {"additional", got.Extra, want.Extra}} {
					g, w := rrSet(sec.got), rrSet(sec.want)
					if !slices.Equal(g, w) {
						t.Errorf("%s %+v %s:\n got %q\nwant %q", label, v, sec.name, g, w)
					}
				}
				if (got.IsEdns0() != nil) != v.edns || (v.edns && got.IsEdns0().Do() != v.do) {
					t.Errorf("%s %+v: OPT %v", label, v, got.IsEdns0())
				}
			}
		}
	}
	// The common queries must take the fast path at all.
	if fast < 50 {
		t.Fatalf("only %d queries took the fast path", fast)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"myapp.peers.internal.", dns.TypeA, false}, {"myapp.peers.internal.", dns.TypeSRV, true}, {"node2.myapp.peers.internal.", dns.TypeAAAA, true}, {"node1.myapp.peers.internal.", dns.TypeAAAA, false}} {
		req := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns {
			req.SetEdns0(1232, false)
		}
		wire, _ := req.Pack()
		if n, _ := snap.fastAnswer(wire, out); n == 0 {
			t.Errorf("%s %s (EDNS %v) took the slow path", q.name, dns.TypeToString[q.qtype], q.edns)
		}
	}
}

// rrSet renders records as sorted zone text, the OPT record left out.
func rrSet(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, strings.ToLower(rr.String()))
		}
	}
	slices.Sort(out)
	return out
}

func TestFastPathAllocatesNothing(t *testing.T) {
	snap := fixture(t).Snapshot()
	req := new(dns.Msg).SetQuestion("MyApp.peers.internal.", dns.TypeSRV)
	req.SetEdns0(1232, true)
	wire, _ := req.Pack()
	out := make([]byte, maxUDPSize)
	if allocs := testing.AllocsPerRun(1000, func() { snap.fastAnswer(wire, out) }); allocs != 0 {
		t.Fatalf("the fast path allocates %v times per query", allocs)
	}
}

// FuzzFastAnswer: the byte-level parser never panics, and what it answers
// is a well-formed reply to the same query id.
func FuzzFastAnswer(f *testing.F) {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5e9, NegativeTTL: 5e9})
	if err != nil {
		f.Fatal(err)
	}
	srv.Publish(f.Context(), fixtureSet())
	snap := srv.Snapshot()
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"myapp.peers.internal.", dns.TypeA, false}, {"myapp.peers.internal.", dns.TypeSRV, true}, {"NODE2.myapp.peers.internal.", dns.TypeTXT, true}} {
		req := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns {
			req.SetEdns0(4096, true)
		}
		wire, _ := req.Pack()
		f.Add(wire)
	}
	out := make([]byte, maxUDPSize)
	f.Fuzz(func(t *testing.T, wire []byte) {
		n, _ := snap.fastAnswer(wire, out)
		if n == 0 {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(out[:n]); err != nil {
			t.Fatalf("fast answer does not unpack: %v", err)
		}
		if m.Id != uint16(wire[0])<<8|uint16(wire[1]) || !m.Response {
			t.Fatalf("reply id %d, query id %d", m.Id, uint16(wire[0])<<8|uint16(wire[1]))
		}
	})
}
