package dnsserver

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// stuckClient connects from the loopback address from, with a small
// receive buffer, and sends the queries without ever reading: the
// server's writes fill the buffers and block.
func stuckClient(t *testing.T, addr, from string, queries ...*dns.Msg) net.Conn {
	t.Helper()
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)},
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		},
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, q := range queries {
		wire, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(wire))), wire...)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// readRcode reads the first answer on c and returns its rcode.
func readRcode(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	return m.Rcode
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 15s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTransfersOfClientsThatNeverRead: AXFR clients that never read hold a
// transfer slot only until the write timeout closes them; the slots are
// capped per client and in all (REFUSED beyond), UDP queries are answered
// meanwhile, and every transfer of a snapshot shares its records.
func TestTransfersOfClientsThatNeverRead(t *testing.T) {
	s := startServer(t, Config{
		TCPWriteTimeout: 500 * time.Millisecond,
		Transfer:        Transfer{Allow: loopback, MaxTransfers: 3, MaxTransfersPerClient: 2},
	})
	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(40000)})
	axfr := new(dns.Msg).SetAxfr("peers.internal.")

	// One client's third transfer is refused.
	stuckClient(t, s.addr, "127.0.0.2", axfr)
	stuckClient(t, s.addr, "127.0.0.2", axfr)
	await(t, "two transfers under way", func() bool { return s.Stats().TransfersOpen == 2 })
	refused := stuckClient(t, s.addr, "127.0.0.2", axfr)
	if rc := readRcode(t, refused); rc != dns.RcodeRefused {
		t.Errorf("a client's third transfer: %s, want REFUSED", dns.RcodeToString[rc])
	}
	refused.Close()
	// Another client's first takes the last slot; a third client's is refused.
	stuckClient(t, s.addr, "127.0.0.3", axfr)
	await(t, "three transfers under way", func() bool { return s.Stats().TransfersOpen == 3 })
	refused = stuckClient(t, s.addr, "127.0.0.4", axfr)
	if rc := readRcode(t, refused); rc != dns.RcodeRefused {
		t.Errorf("a transfer beyond the cap: %s, want REFUSED", dns.RcodeToString[rc])
	}
	refused.Close()
	// UDP is answered while the transfers are stuck.
	for range 20 {
		if r := s.query(t, "udp", "node1.myapp.peers.internal.", dns.TypeA, 0); len(r.Answer) != 1 {
			t.Fatalf("UDP during transfers: %v", r)
		}
	}
	if a, b := s.xfr.records(s.Snapshot()), s.xfr.records(s.Snapshot()); &a[0] != &b[0] {
		t.Error("two transfers of one snapshot build its records twice")
	}

	// The write timeout closes the stuck ones and frees their slots.
	await(t, "stuck transfers and their connections closed by the write timeout", func() bool {
		open := s.Stats().TCPConnsOpen
		return s.Stats().TransfersOpen == 0 && s.Stats().TCPWriteTimeouts == 3 && open == 0
	})
	rrs, _, rcode := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
	if rcode != dns.RcodeSuccess || len(rrs) != s.Snapshot().recordCount()+2 {
		t.Errorf("a transfer after the stuck ones: %s, %d records", dns.RcodeToString[rcode], len(rrs))
	}
}

// TestStopWithStuckConnections: five clients that pipeline queries with
// large answers and never read block the server's writes; a stop closes
// them and returns nil within a couple of seconds, whatever the write
// timeout.
func TestStopWithStuckConnections(t *testing.T) {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second,
		TCPWriteTimeout: time.Minute, Transfer: Transfer{Allow: loopback}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Publish(context.Background(), bridge.Set{Service: myapp, Peers: manyPeers(40000)})
	ls, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()

	big := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA) // 64 KiB over TCP
	queries := make([]*dns.Msg, 100)
	for i := range queries {
		queries[i] = big
	}
	for range 4 {
		stuckClient(t, ls.Addr().String(), "127.0.0.1", queries...)
	}
	stuckClient(t, ls.Addr().String(), "127.0.0.1", new(dns.Msg).SetAxfr("peers.internal."))
	tcpAnswers := func() uint64 {
		var n uint64
		for q := range srv.stats.answers[1] {
			for r := range srv.stats.answers[1][q] {
				n += srv.stats.answers[1][q][r].Load()
			}
		}
		return n
	}
	// Stuck: five connections open, the transfer under way, and the
	// answers no longer growing.
	var last uint64
	await(t, "writes blocked", func() bool {
		open := srv.Stats().TCPConnsOpen
		n := tcpAnswers()
		stuck := open == 5 && srv.Stats().TransfersOpen == 1 && n == last && n > 0
		last = n
		time.Sleep(100 * time.Millisecond)
		return stuck
	})

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running 20s after the stop")
	}
	took := time.Since(start)
	t.Logf("stop with 5 stuck connections: %v", took)
	if took > 10*time.Second { // about 1.5 s; the write timeout is a minute
		t.Errorf("the stop took %v", took)
	}
}

// captureWriter records what a transfer writes.
type captureWriter struct {
	dns.ResponseWriter
	msgs [][]byte
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.msgs = append(c.msgs, append([]byte(nil), b...))
	return len(b), nil
}

func (c *captureWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}

func (c *captureWriter) TsigTimersOnly(bool) {}

// TestPackedTransferIsTheSame: the messages packed once per snapshot, with
// the request's ID, flags and OPT set, are those a transfer packing its
// own sends.
func TestPackedTransferIsTheSame(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: loopback}})
	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(3000)})
	snap := s.Snapshot()
	for _, req := range []*dns.Msg{
		new(dns.Msg).SetAxfr("peers.internal."),
		new(dns.Msg).SetAxfr("peers.internal.").SetEdns0(1232, true),
		new(dns.Msg).SetAxfr("peers.internal.").SetEdns0(4096, false),
	} {
		req.Id = 4711
		req.RecursionDesired = true
		req.CheckingDisabled = true
		packed := s.xfr.packedFor(snap, req, dns.TypeAXFR, xfrFull)
		if packed == nil {
			t.Fatal("no packed transfer")
		}
		var got, want captureWriter
		if _, err := writePacked(&got, req, packed); err != nil {
			t.Fatal(err)
		}
		if _, err := writeTransfer(&want, req, s.xfr.records(snap)); err != nil {
			t.Fatal(err)
		}
		if len(got.msgs) != len(want.msgs) || len(got.msgs) < 2 {
			t.Fatalf("%d messages packed once, %d packed per transfer", len(got.msgs), len(want.msgs))
		}
		for i := range got.msgs {
			var g, w dns.Msg
			if err := g.Unpack(got.msgs[i]); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if err := w.Unpack(want.msgs[i]); err != nil {
				t.Fatal(err)
			}
			if g.String() != w.String() {
				t.Fatalf("message %d differs:\n%s\nwant\n%s", i, g.String()[:400], w.String()[:400])
			}
		}
	}
	if s.xfr.packedFor(snap, new(dns.Msg).SetAxfr("PEERS.internal."), dns.TypeAXFR, xfrFull) != nil {
		t.Error("a request with the name in other case gets messages whose question does not echo it")
	}
}
