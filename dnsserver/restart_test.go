package dnsserver_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/dnsserver"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
)

// process is one server on its own sockets, as one peerbridge process.
type process struct {
	srv    *dnsserver.Server
	ls     *dnsserver.Listeners
	cancel context.CancelFunc
	done   chan error
}

func startProcess(t *testing.T, addr string) *process {
	t.Helper()
	srv, err := dnsserver.New(dnsserver.Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	set := bridge.Set{
		Service: bridge.Service{Topology: "myapp", Name: "myapp", Provider: "static", Port: 4369},
		Peers:   []bridge.Peer{{ID: "node1", Name: "node1", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}},
	}.Normalize()
	if err := srv.Publish(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	ls, err := dnsserver.Listen(addr)
	if err != nil {
		t.Fatalf("Listen %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{srv: srv, ls: ls, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ctx, ls) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop stops the server as SIGTERM does and returns how long it took.
func (p *process) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	p.cancel()
	select {
	case err, ok := <-p.done:
		if ok && err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(p.done)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running 20s after its stop")
	}
	return time.Since(start)
}

// TestReusePortHandOver: a new server opens the same address beside a
// running one (SO_REUSEPORT), the old one stops; three times, under a
// steady stream of queries over UDP and TCP, and not one is lost.
func TestReusePortHandOver(t *testing.T) {
	old := startProcess(t, "127.0.0.1:0")
	addr := old.ls.Addr().String()
	stream := dnstest.StartStream(addr, "myapp.peers.internal.", dns.TypeA, 3, 1)
	waitAnswered(t, stream, 20)
	var longestStop time.Duration
	for range 3 {
		next := startProcess(t, addr)
		waitAnswered(t, stream, stream.Answered()+20)
		longestStop = max(longestStop, old.stop(t))
		waitAnswered(t, stream, stream.Answered()+20)
		old = next
	}
	r := stream.Stop()
	t.Logf("3 hand-overs: %d queries, %d lost, %d refused attempts, %d retries, longest answer %v, longest stop %v",
		r.Sent, r.Lost, r.Refused, r.Retries, r.MaxLatency, longestStop)
	if r.Lost > 0 || r.Bad > 0 {
		t.Errorf("%d of %d queries lost (%d bad answers); last error: %s", r.Lost, r.Sent, r.Bad, r.LastError)
	}
	if longestStop > 5*time.Second {
		t.Errorf("a stop took %v", longestStop)
	}
}

func waitAnswered(t *testing.T, s *dnstest.Stream, n int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.Answered() < n {
		if time.Now().After(deadline) {
			r := s.Stop()
			t.Fatalf("%d answered, waiting for %d: %+v", r.Answered, n, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStopAnswersQueued: what the kernel queued on the sockets before a
// stop, datagrams and connections alike, is answered before they close.
func TestStopAnswersQueued(t *testing.T) {
	srv, err := dnsserver.New(dnsserver.Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := dnsserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ls.Addr().String()
	q, err := new(dns.Msg).SetQuestion("peers.internal.", dns.TypeSOA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	const datagrams, conns = 40, 5
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for range datagrams {
		if _, err := udp.Write(q); err != nil {
			t.Fatal(err)
		}
	}
	var tcp []net.Conn
	for range conns {
		c, err := net.Dial("tcp", addr) // completes in the listener's queue
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
		tcp = append(tcp, c)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stopped before it reads anything
	start := time.Now()
	if err := srv.Serve(ctx, ls); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start))

	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range datagrams {
		if _, err := udp.Read(make([]byte, 512)); err != nil {
			t.Fatalf("%d of %d queued datagrams answered: %v", i, datagrams, err)
		}
	}
	for i, c := range tcp {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			t.Fatalf("queued connection %d not answered: %v", i, err)
		}
	}
}
