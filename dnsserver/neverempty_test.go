package dnsserver

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// TestServiceWithoutASetIsServfail: a configured service that has no set
// yet answers SERVFAIL on both paths, UDP and TCP, for its own name, its
// peers' names and its SRV names; never NXDOMAIN or an empty NOERROR,
// which resolvers would cache. Unknown names elsewhere stay NXDOMAIN, and
// the service answers once its set is published.
func TestServiceWithoutASetIsServfail(t *testing.T) {
	s := startServer(t, Config{Services: []string{"web", "myapp"}})
	s.publish(t, bridge.Set{Service: bridge.Service{Topology: "myapp", Name: "myapp", Port: 4369}, Peers: []bridge.Peer{peer("a=10.0.0.1")}})
	for _, network := range []string{"udp", "tcp"} {
		for _, q := range []struct {
			name  string
			qtype uint16
			rcode int
		}{
			{"web.peers.internal.", dns.TypeA, dns.RcodeServerFailure},
			{"WEB.peers.internal.", dns.TypeAAAA, dns.RcodeServerFailure},
			{"web.peers.internal.", dns.TypeSRV, dns.RcodeServerFailure},
			{"_epmd._tcp.web.peers.internal.", dns.TypeSRV, dns.RcodeServerFailure},
			{"node1.web.peers.internal.", dns.TypeA, dns.RcodeServerFailure},
			{"other.peers.internal.", dns.TypeA, dns.RcodeNameError},
			{"nobody.myapp.peers.internal.", dns.TypeA, dns.RcodeNameError},
			{"myapp.peers.internal.", dns.TypeA, dns.RcodeSuccess},
		} {
			for _, size := range []uint16{0, 1232} {
				r := s.query(t, network, q.name, q.qtype, size)
				if r.Rcode != q.rcode {
					t.Errorf("%s %s %s (edns %d): %s, want %s", network, q.name, dns.TypeToString[q.qtype], size,
						dns.RcodeToString[r.Rcode], dns.RcodeToString[q.rcode])
				}
			}
		}
	}
	s.publish(t, bridge.Set{Service: bridge.Service{Topology: "web", Name: "web"}, Peers: []bridge.Peer{peer("b=10.0.0.2")}})
	if r := s.query(t, "udp", "web.peers.internal.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after its first set: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if r := s.query(t, "udp", "node1.web.peers.internal.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Fatalf("an unknown peer of a service with a set: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

// TestSharedAddressIsOneRecord: two peers with one address give one A
// record at the service name (RFC 2181 5.2), on both query paths and in a
// zone transfer, while each keeps its own name, SRV record and PTR.
func TestSharedAddressIsOneRecord(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: loopback}})
	s.publish(t, bridge.Set{Service: bridge.Service{Topology: "myapp", Name: "myapp", Port: 4369},
		Peers: []bridge.Peer{peer("node1=10.0.0.1,fd00::1"), peer("node2=10.0.0.1,fd00::1"), peer("node3=10.0.0.3")}})
	for _, network := range []string{"udp", "tcp"} {
		for _, size := range []uint16{0, 1232} {
			a := s.query(t, network, "myapp.peers.internal.", dns.TypeA, size)
			if got := texts(a.Answer); !slices.Equal(got, zone(t, "myapp.peers.internal. 5 IN A 10.0.0.1", "myapp.peers.internal. 5 IN A 10.0.0.3")) {
				t.Errorf("%s A (edns %d): %q", network, size, got)
			}
			aaaa := s.query(t, network, "myapp.peers.internal.", dns.TypeAAAA, size)
			if len(aaaa.Answer) != 1 {
				t.Errorf("%s AAAA (edns %d): %v", network, size, aaaa.Answer)
			}
			srv := s.query(t, network, "myapp.peers.internal.", dns.TypeSRV, size)
			if len(srv.Answer) != 3 {
				t.Errorf("%s SRV: %d records, want one per peer", network, len(srv.Answer))
			}
		}
	}
	for _, host := range []string{"node1", "node2"} {
		if r := s.query(t, "udp", host+".myapp.peers.internal.", dns.TypeA, 0); len(r.Answer) != 1 {
			t.Errorf("%s A: %v", host, r.Answer)
		}
	}
	// The reverse name is both peers': two PTR records, distinct, so no
	// duplicate; picking one would hide a peer from reverse lookups.
	ptr := s.query(t, "udp", "1.0.0.10.in-addr.arpa.", dns.TypePTR, 0)
	if got := texts(ptr.Answer); !slices.Equal(got, zone(t,
		"1.0.0.10.in-addr.arpa. 5 IN PTR node1.myapp.peers.internal.",
		"1.0.0.10.in-addr.arpa. 5 IN PTR node2.myapp.peers.internal.")) {
		t.Errorf("PTR: %q", got)
	}
	rrs, _, _ := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
	count := 0
	for _, rr := range rrs {
		if a, ok := rr.(*dns.A); ok && a.Hdr.Name == "myapp.peers.internal." {
			count++
		}
	}
	if count != 2 {
		t.Errorf("AXFR holds %d A records at the service name, want 2", count)
	}
}

// TestRestoreKeepsTheSerialAbove: restored sets are served at once under
// a serial above the saved one, even when the saved one ran ahead of the
// clock, and also when nothing is restored.
func TestRestoreKeepsTheSerialAbove(t *testing.T) {
	ahead := uint32(time.Now().Unix()) + 3600
	s, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, Services: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	set := bridge.Set{Service: bridge.Service{Topology: "web", Name: "web"}, Peers: []bridge.Peer{peer("a=10.0.0.1")}}.Normalize()
	s.Restore(ahead, set)
	if got := s.Snapshot().Serial(); int32(got-ahead) <= 0 {
		t.Fatalf("serial %d after restoring %d", got, ahead)
	}
	if len(s.Sets()["web"].Peers) != 1 {
		t.Fatal("the restored set is not served")
	}
	before := s.Snapshot().Serial()
	s.Publish(context.Background(), set) // unchanged: nothing moves
	if s.Snapshot().Serial() != before {
		t.Fatal("an unchanged set changed the serial")
	}
	empty, _ := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second})
	empty.Restore(ahead)
	if got := empty.Snapshot().Serial(); int32(got-ahead) <= 0 {
		t.Fatalf("serial %d after restoring only the serial %d", got, ahead)
	}
}
