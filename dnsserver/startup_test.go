package dnsserver

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// topologySets returns n one-topology sets of two peers each, as a start
// with n static topologies publishes them.
func topologySets(n int) []bridge.Set {
	sets := make([]bridge.Set, n)
	for i := range sets {
		name := fmt.Sprintf("t%d", i)
		sets[i] = bridge.Set{
			Service: bridge.Service{Topology: name, Name: name, Provider: "static", Port: 4369},
			Peers: []bridge.Peer{
				{Name: "a", ID: "a", Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})}},
				{Name: "b", ID: "b", Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 2})}},
			},
		}.Normalize()
	}
	return sets
}

// publishAll publishes every set at once, one goroutine per topology as
// the loops do at start, and returns when all are served.
func publishAll(tb testing.TB, sets []bridge.Set) *Server {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, set := range sets {
		wg.Go(func() {
			if err := srv.Publish(context.Background(), set); err != nil {
				tb.Error(err)
			}
		})
	}
	wg.Wait()
	return srv
}

// Issue 25, finding 11: every Publish built a snapshot of every topology,
// so a start with n topologies, all publishing at once, took time in n²:
// 3,000 took 9 s, 10,000 did not finish in a minute. Publish calls that
// meet share a build now. The bound is generous (well under a second is
// usual without the race detector); before, this took minutes.
func TestPublishManyTopologiesAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 10,000 topologies")
	}
	const n = 10_000
	sets := topologySets(n)
	done := make(chan *Server, 1)
	start := time.Now()
	go func() { done <- publishAll(t, sets) }()
	var srv *Server
	select {
	case srv = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%d topologies published at once not all served within 60s", n)
	}
	t.Logf("%d topologies served after %s", n, time.Since(start))
	if got := len(srv.Sets()); got != n {
		t.Fatalf("%d topologies published, want %d", got, n)
	}
	// Every topology answers, the last one published as the first.
	for _, i := range []int{0, n / 2, n - 1} {
		name := fmt.Sprintf("t%d.peers.internal.", i)
		if got := srv.Snapshot().lookup(name); got == nil || len(got.a) != 2 {
			t.Errorf("%s: %v, want 2 A records", name, got)
		}
	}
}

// BenchmarkPublishTopologies is the start of n topologies publishing at
// once: ns/op per start. Work per topology that does not grow with n makes
// the time at 3,000 about three times the time at 1,000.
func BenchmarkPublishTopologies(b *testing.B) {
	for _, n := range []int{1000, 3000} {
		sets := topologySets(n)
		b.Run(fmt.Sprintf("topologies=%d", n), func(b *testing.B) {
			for b.Loop() {
				publishAll(b, sets)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/topology")
		})
	}
}
