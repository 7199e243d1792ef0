package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// TestLimiterRate drives the limiter on its own clock: one network gets a
// second's worth of answers at once, then the rate; every slip-th answer
// over the limit is truncated, the rest dropped; another network and the
// same network's next second are untouched.
func TestLimiterRate(t *testing.T) {
	l := newLimiter(RateLimit{PerSecond: 10, Slip: 2})
	a := &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5353}
	sameNet := &net.UDPAddr{IP: net.ParseIP("192.0.2.200"), Port: 53}
	other := &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53}

	count := func(addr net.Addr, n int, now int64) (ans, slip, drop int) {
		for range n {
			switch l.take(addr, now) {
			case rrlAnswer:
				ans++
			case rrlSlip:
				slip++
			case rrlDrop:
				drop++
			}
		}
		return
	}
	const t0 = int64(10 * time.Second)
	if ans, slip, drop := count(a, 30, t0); ans != 10 || slip != 10 || drop != 10 {
		t.Errorf("30 at once from a fresh network: %d answered, %d slipped, %d dropped; want 10, 10, 10", ans, slip, drop)
	}
	if ans, _, _ := count(sameNet, 5, t0); ans != 0 {
		t.Errorf("another address of the same /24 got %d answers past its network's limit", ans)
	}
	if ans, _, _ := count(other, 10, t0); ans != 10 {
		t.Errorf("another network got %d of 10 answers", ans)
	}
	// 100 ms later, one more answer is due (10 a second).
	if ans, _, _ := count(a, 5, t0+int64(100*time.Millisecond)); ans != 1 {
		t.Errorf("100 ms later: %d answers, want 1", ans)
	}
	// After a quiet second and more, the full burst is back, no more.
	if ans, _, _ := count(a, 30, t0+int64(3*time.Second)); ans != 10 {
		t.Errorf("after a quiet while: %d answers, want 10", ans)
	}
	if got, want := l.slipped.Load()+l.dropped.Load(), uint64(20+5+4+20); got != want {
		t.Errorf("limited %d answers, counted %d", want, got)
	}

	v6 := &net.UDPAddr{IP: net.ParseIP("2001:db8:0:ab00::1")}
	v6same := &net.UDPAddr{IP: net.ParseIP("2001:db8:0:abff::2")}  // same /56
	v6other := &net.UDPAddr{IP: net.ParseIP("2001:db8:0:ac00::1")} // next /56
	count(v6, 10, t0)
	if ans, _, _ := count(v6same, 3, t0); ans != 0 {
		t.Errorf("an address of the same /56 got %d answers past its network's limit", ans)
	}
	if ans, _, _ := count(v6other, 3, t0); ans != 3 {
		t.Errorf("the next /56 got %d of 3 answers", ans)
	}
}

// TestLimiterSlipSettings: slip 0 drops everything over the limit, slip 1
// truncates everything.
func TestLimiterSlipSettings(t *testing.T) {
	for _, slip := range []int{0, 1, 3} {
		l := newLimiter(RateLimit{PerSecond: 1, Slip: slip})
		a := &net.UDPAddr{IP: net.ParseIP("192.0.2.1")}
		l.take(a, 0)
		for range 30 {
			l.take(a, 0)
		}
		wantSlip := uint64(0)
		if slip > 0 {
			wantSlip = uint64(30 / slip)
		}
		if l.slipped.Load() != wantSlip || l.dropped.Load() != 30-wantSlip {
			t.Errorf("slip %d: %d slipped and %d dropped of 30 over the limit, want %d slipped", slip, l.slipped.Load(), l.dropped.Load(), wantSlip)
		}
	}
	if newLimiter(RateLimit{}) != nil {
		t.Error("a rate of 0 made a limiter; want none (off)")
	}
}

// TestLimiterBounded floods the limiter from a million spoofed networks:
// its table stays the size it was made with, and it allocates nothing.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter(RateLimit{PerSecond: 5, Slip: 2})
	addr := &net.UDPAddr{IP: make(net.IP, 4)}
	i := 0
	allocs := testing.AllocsPerRun(1_000_000, func() {
		i++
		addr.IP[0], addr.IP[1], addr.IP[2] = byte(i>>16), byte(i>>8), byte(i)
		l.take(addr, int64(i))
	})
	if allocs != 0 {
		t.Errorf("take allocates %.1f times per answer", allocs)
	}
	if len(l.slots) != rrlSlots || cap(l.slots) != rrlSlots {
		t.Errorf("the table grew to %d slots", cap(l.slots))
	}
}

func TestRateLimitValidate(t *testing.T) {
	for _, r := range []RateLimit{{PerSecond: -1, Slip: 2}, {PerSecond: MaxRateLimit + 1}, {Slip: -1}, {Slip: MaxSlip + 1}} {
		err := Config{Zone: "peers.internal.", RateLimit: r}.Validate()
		if ses := bridge.SettingErrors(err); len(ses) != 1 || (ses[0].Setting != "DNS_RATE_LIMIT" && ses[0].Setting != "DNS_RATE_LIMIT_SLIP") {
			t.Errorf("%+v: %v; want one DNS_RATE_LIMIT(_SLIP) error", r, err)
		}
	}
	if err := (Config{Zone: "peers.internal.", RateLimit: RateLimit{PerSecond: 100, Slip: 2}}).Validate(); err != nil {
		t.Errorf("a good rate limit: %v", err)
	}
}

// rrlClient sends queries from one loopback source address, one at a time,
// and sorts what comes back: a full answer, a truncated empty one, or
// nothing within the wait.
type rrlClient struct {
	conn *net.UDPConn
	id   uint16
}

func newRRLClient(t *testing.T, src, server string) *rrlClient {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		t.Fatalf("a client on %s: %v", src, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rrlClient{conn: conn}
}

type rrlTally struct{ full, truncated, none int }

func (c *rrlClient) ask(t *testing.T, n int, wait time.Duration) rrlTally {
	t.Helper()
	var tally rrlTally
	buf := make([]byte, 2048)
	for range n {
		c.id++
		q := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
		q.Id = c.id
		wire, _ := q.Pack()
		if _, err := c.conn.Write(wire); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(wait)
		for {
			c.conn.SetReadDeadline(deadline)
			k, err := c.conn.Read(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tally.none++
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var m dns.Msg
			if m.Unpack(buf[:k]) != nil || m.Id != c.id {
				continue // a late reply to an earlier query
			}
			switch {
			case m.Truncated && len(m.Answer) == 0 && m.Rcode == dns.RcodeSuccess && len(m.Question) == 1:
				tally.truncated++
			case !m.Truncated && len(m.Answer) == 3 && m.Authoritative:
				tally.full++
			default:
				t.Fatalf("an answer that is neither full nor slipped:\n%v", &m)
			}
			break
		}
	}
	return tally
}

// TestRateLimitSockets runs the limit over real sockets from two client
// networks on loopback (127.0.0.0/24 and 127.0.1.0/24): the first is held
// to its rate with every second answer over it truncated and the others
// dropped, exactly as the server's counters say; the second network, and
// TCP from the first, are answered in full meanwhile.
func TestRateLimitSockets(t *testing.T) {
	const rate = 10
	srv := startServer(t, Config{RateLimit: RateLimit{PerSecond: rate, Slip: 2}})
	srv.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(3)})

	a := newRRLClient(t, "127.0.0.1", srv.addr)
	b := newRRLClient(t, "127.0.1.1", srv.addr)
	start := time.Now()
	got := a.ask(t, 60, 100*time.Millisecond)
	elapsed := time.Since(start)
	// The first second's burst is answered; after that the rate, for as
	// long as the sending took (it is slowed by every dropped answer's
	// wait, so more time means more answers: the bound follows it).
	most := rate + int(elapsed.Seconds()*rate) + 1
	if got.full < rate || got.full > most {
		t.Errorf("network 127.0.0.0/24 got %d full answers of 60 in %s; want %d to %d", got.full, elapsed.Round(time.Millisecond), rate, most)
	}
	over := 60 - got.full
	if d := got.truncated - over/2; d < -1 || d > 1 {
		t.Errorf("%d answers over the limit, %d truncated; want every second one (slip 2)", over, got.truncated)
	}
	slipped, dropped := srv.rateLimited()
	if int(slipped) != got.truncated || int(dropped) != got.none {
		t.Errorf("the server counted %d slipped and %d dropped; the client saw %d truncated and %d unanswered", slipped, dropped, got.truncated, got.none)
	}

	if other := b.ask(t, rate, 2*time.Second); other.full != rate {
		t.Errorf("network 127.0.1.0/24 got %+v of %d queries; want every one in full", other, rate)
	}
	for i := range 20 {
		m := srv.query(t, "tcp", "myapp.peers.internal.", dns.TypeA, 0)
		if len(m.Answer) != 3 || m.Truncated {
			t.Fatalf("TCP query %d from the limited network: %v", i, m)
		}
	}
	if s, d := srv.rateLimited(); s != slipped || d != dropped {
		t.Errorf("TCP and the other network were limited: slipped %d to %d, dropped %d to %d", slipped, s, dropped, d)
	}
}

// BenchmarkRateLimit measures what the limit costs the UDP fast path per
// query: the fast answer alone, with the limit off (a nil check), and on
// (a rate no client reaches, so every query is also answered), from
// clients spread over many networks.
func BenchmarkRateLimit(b *testing.B) {
	for _, mode := range []string{"none", "off", "on"} {
		b.Run(mode, func(b *testing.B) {
			var rl RateLimit
			if mode == "on" {
				rl = RateLimit{PerSecond: MaxRateLimit, Slip: 2}
			}
			srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second, RateLimit: rl})
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.Publish(context.Background(), bridge.Set{Service: myapp, Peers: manyPeers(3)}.Normalize()); err != nil {
				b.Fatal(err)
			}
			req := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
			req.SetEdns0(1232, false)
			wire, _ := req.Pack()
			buf := make([]byte, maxUDPSize)
			addrs := make([]net.Addr, 256)
			for i := range addrs {
				addrs[i] = &net.UDPAddr{IP: net.ParseIP(fmt.Sprintf("10.%d.%d.1", i/16, i%16)), Port: 5353}
			}
			snap := srv.Snapshot()
			var now int64
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				if mode != "none" {
					if srv.rrl != nil && i%udpBatch == 1 {
						now = srv.rrl.now() // once a batch, as serveUDP reads it
					}
					if srv.limit(wire, addrs[i%len(addrs)], now) != rrlAnswer {
						b.Fatal("limited")
					}
				}
				if n, _ := snap.fastAnswer(wire, buf, false); n == 0 {
					b.Fatal("not answered on the fast path")
				}
			}
		})
	}
}

// BenchmarkRateLimitSocket is the limit's cost as a client sees it: the
// server's CPU per UDP query (server-us/op) of a child process serving
// A queries with the limit off and on, in interleaved rounds (run with
// -count), four queries in flight from one loopback client.
func BenchmarkRateLimitSocket(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			spec := "3"
			if mode == "on" {
				spec = "rrl:3"
			}
			child := startBenchServer(b, 3, spec)
			req := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
			req.SetEdns0(1232, false)
			wire, err := req.Pack()
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(4)
			before := child.cpu(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				conn, err := net.Dial("udp", child.addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				ask := roundTrip(conn, wire, false)
				for pb.Next() {
					if err := ask(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			used := child.cpu(b) - before
			b.ReportMetric(float64(used.Nanoseconds())/1e3/float64(b.N), "server-us/op")
		})
	}
}
