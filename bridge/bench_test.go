package bridge

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkSteadyPoll is what the loop does with an unchanged poll of
// 10,000 peers before any publisher sees it: normalize the provider's
// answer and compare it with the set published.
func BenchmarkSteadyPoll(b *testing.B) {
	peers := make([]Peer, 10_000)
	for i := range peers {
		peers[i] = Peer{
			Name: fmt.Sprintf("node%05d", i), ID: fmt.Sprint(i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Attrs: map[string]string{"region": "nyc3", "size": "s-1vcpu-1gb"},
		}
	}
	published := Set{Peers: peers}.Normalize()
	b.ReportAllocs()
	for b.Loop() {
		if next := (Set{Peers: peers}).Normalize(); !next.Equal(published) {
			b.Fatal("an unchanged poll compares unequal")
		}
	}
}
