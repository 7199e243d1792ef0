package dnsserver

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// FuzzAnswer feeds arbitrary packets to the query path: whatever unpacks
// must get an answer that packs, fits the transport, and leaves the
// snapshot as it was. The seed corpus in testdata/fuzz runs with every
// go test.
func FuzzAnswer(f *testing.F) {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	crit := peer("down=10.0.0.9")
	crit.Health = bridge.HealthCritical
	set := bridge.Set{Service: myapp, Peers: append(manyPeers(40), peer("node2=10.0.0.2,fd00::2"), crit)}.Normalize()
	if err := srv.Publish(f.Context(), set); err != nil {
		f.Fatal(err)
	}
	snap := srv.Snapshot()
	var before []byte
	if err := snap.WriteZone(writerFunc(func(p []byte) { before = append(before, p...) })); err != nil {
		f.Fatal(err)
	}

	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"myapp.peers.internal.", dns.TypeA, 0},
		{"myapp.peers.internal.", dns.TypeSRV, 1232},
		{"_epmd._tcp.myapp.peers.internal.", dns.TypeSRV, 4096},
		{"node2.myapp.peers.internal.", dns.TypeTXT, 512},
		{"2.0.0.10.in-addr.arpa.", dns.TypePTR, 0},
		{"peers.internal.", dns.TypeANY, 1232},
		{"nope.peers.internal.", dns.TypeA, 1232},
		{"example.com.", dns.TypeA, 0},
	} {
		m := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, false)
		f.Add(wire, true)
	}

	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(wire); err != nil {
			return // the server drops or FORMERRs these before the query path
		}
		r := snap.answer(req, tcp)
		out, err := r.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, r)
		}
		limit := dns.MaxMsgSize
		if !tcp {
			limit = maxUDPSize
		}
		if len(out) > limit {
			t.Fatalf("answer is %d bytes, over %d", len(out), limit)
		}
		if r.Id != req.Id || !r.Response {
			t.Fatalf("reply id %d response %v to query id %d", r.Id, r.Response, req.Id)
		}
		var after []byte
		if err := snap.WriteZone(writerFunc(func(p []byte) { after = append(after, p...) })); err != nil {
			t.Fatal(err)
		}
		if string(after) != string(before) {
			t.Fatal("the query path modified the snapshot")
		}
	})
}

type writerFunc func([]byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }
