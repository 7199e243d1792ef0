package dnsserver

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// taskSet is a topology whose peers carry their own ports (ECS host
// ports): one peer without one gets the service's.
func taskSet(port uint16) bridge.Set {
	a, b, c := peer("t1=10.0.2.1"), peer("t2=10.0.2.1"), peer("t3=10.0.2.3")
	a.Port, b.Port = 32768, 32769
	return bridge.Set{
		Service: bridge.Service{Topology: "tasks", Name: "tasks", Provider: "ecs", Port: port, PortName: "epmd"},
		Peers:   []bridge.Peer{a, b, c},
	}.Normalize()
}

func srvPorts(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			out = append(out, strings.TrimSuffix(s.Target, ".tasks.peers.internal.")+":"+strconv.Itoa(int(s.Port)))
		}
	}
	slices.Sort(out)
	return out
}

// TestPeerPortsInSRV: SRV records carry each peer's own port when the
// topology's port is not configured, the configured one when it is; a
// peer whose port alone changes gets a new record; the fast path, the
// full path, TCP and AXFR all agree.
func TestPeerPortsInSRV(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: loopback}})
	ordered := orderedServer(t) // shuffles nothing: its two paths compare byte for byte
	publish := func(set bridge.Set) {
		t.Helper()
		s.publish(t, set)
		if err := ordered.Publish(context.Background(), set); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want []string) {
		t.Helper()
		for _, name := range []string{"tasks.peers.internal.", "_epmd._tcp.tasks.peers.internal."} {
			for _, network := range []string{"udp", "tcp"} {
				if got := srvPorts(s.query(t, network, name, dns.TypeSRV, 1232).Answer); !slices.Equal(got, want) {
					t.Errorf("%s SRV over %s: %q, want %q", name, network, got, want)
				}
			}
			req := new(dns.Msg).SetQuestion(name, dns.TypeSRV)
			wire, _ := req.Pack()
			if !compareWithFull(t, ordered, wire) {
				t.Errorf("%s SRV: not answered by the fast path", name)
			}
		}
		rrs, _, rcode := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
		if rcode != dns.RcodeSuccess {
			t.Fatalf("AXFR rcode %s", dns.RcodeToString[rcode])
		}
		var inZone []dns.RR
		for _, rr := range rrs {
			if rr.Header().Name == "tasks.peers.internal." {
				inZone = append(inZone, rr)
			}
		}
		if got := srvPorts(inZone); !slices.Equal(got, want) {
			t.Errorf("AXFR SRV %q, want %q", got, want)
		}
	}

	publish(taskSet(0))
	check([]string{"t1:32768", "t2:32769", "t3:0"})

	// PEERBRIDGE_PORT set: it wins for every peer.
	publish(taskSet(4369))
	check([]string{"t1:4369", "t2:4369", "t3:4369"})

	// Back to own ports, then one task's host port moves: its record is
	// rebuilt although its name, id and address stay.
	publish(taskSet(0))
	moved := taskSet(0)
	moved.Peers[1].Port = 40000
	publish(moved)
	check([]string{"t1:32768", "t2:40000", "t3:0"})
}
