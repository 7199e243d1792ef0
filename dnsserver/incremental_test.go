package dnsserver

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// TestIncrementalBuild: a snapshot that takes records and packed answers
// over from the previous one serves exactly what one built from scratch
// serves, its fast path agrees with its full path (the packed negative
// answers of an older serial included), and its IXFR diff is the text
// difference of the two zones.
func TestIncrementalBuild(t *testing.T) {
	srv := orderedServer(t)
	srv.cfg.ns = []NameServer{{Name: "ns.peers.internal.", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.53")}}}
	worker := bridge.Service{Topology: "worker", Name: "worker", Provider: "static", Port: 9000}
	nsSvc := bridge.Service{Topology: "nstopo", Name: "ns", Provider: "static", Port: 53}
	base := manyPeers(20)
	moved := slices.Clone(base)
	moved[3].Addrs = []netip.Addr{netip.MustParseAddr("10.0.0.99"), netip.MustParseAddr("fd00::3")}
	renamed := slices.Clone(moved)
	renamed[4].Name = "other"
	down := slices.Clone(renamed)
	down[5].Health = bridge.HealthCritical
	steps := []bridge.Set{
		{Service: myapp, Peers: base},
		{Service: worker, Peers: base[:3]}, // the same addresses: shared reverse names
		{Service: myapp, Peers: moved},
		{Service: myapp, Peers: append(slices.Clone(moved), bridge.Peer{Name: "late", ID: "x", Addrs: moved[0].Addrs})},
		{Service: myapp, Peers: renamed},
		{Service: myapp, Peers: down},
		{Service: nsSvc, Peers: base[7:9]}, // under the name server's label
		{Service: nsSvc, Peers: base[7:10]},
		{Service: worker, Peers: nil},
		{Service: bridge.Service{Topology: "myapp", Name: "myapp", Provider: "static", Port: 1, PortName: "p"}, Peers: down},
		{Service: myapp, Peers: base[2:]},
	}
	for i, set := range steps {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			prev := srv.Snapshot()
			if err := srv.Publish(t.Context(), set.Normalize()); err != nil {
				t.Fatal(err)
			}
			snap := srv.Snapshot()
			sets := slices.Collect(func(yield func(bridge.Set) bool) {
				for _, s := range srv.Sets() {
					if !yield(s) {
						return
					}
				}
			})
			scratch := build(srv.cfg, snap.serial, sets, nil)
			if got, want := zoneText(t, snap), zoneText(t, scratch); got != want {
				t.Fatalf("zone differs from one built from scratch:\n%s\nwant\n%s", got, want)
			}
			for _, name := range snap.names() {
				for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV} {
					for _, edns := range []bool{false, true} {
						req := new(dns.Msg).SetQuestion(name, qtype)
						if edns {
							req.SetEdns0(1232, false)
						}
						wire := pack(t, req)
						if !compareWithFull(t, srv, wire) && qtype != dns.TypeSRV {
							t.Errorf("%s %s took the slow path", name, dns.TypeToString[qtype])
						}
					}
				}
			}
			d := diff(prev, snap)
			wantDel, wantAdd := textDiff(prev.zoneRecords(), snap.zoneRecords()), textDiff(snap.zoneRecords(), prev.zoneRecords())
			if got := sortedTexts(d.del); !slices.Equal(got, wantDel) {
				t.Errorf("IXFR deletes %q, want %q", got, wantDel)
			}
			if got := sortedTexts(d.add); !slices.Equal(got, wantAdd) {
				t.Errorf("IXFR adds %q, want %q", got, wantAdd)
			}
		})
	}
}

func zoneText(t *testing.T, s *Snapshot) string {
	t.Helper()
	var b bytes.Buffer
	if err := s.WriteZone(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// textDiff is the records of a whose text b has not, sorted.
func textDiff(a, b []dns.RR) []string {
	in := map[string]bool{}
	for _, rr := range b {
		in[rr.String()] = true
	}
	var out []string
	for _, rr := range a {
		if !in[rr.String()] {
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedTexts(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}
