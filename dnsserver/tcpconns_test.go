package dnsserver

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestTCPConnCap: at the cap, a new connection closes the one idle the
// longest, and the metrics count both.
func TestTCPConnCap(t *testing.T) {
	s := startServer(t, Config{MaxTCPConns: 2})
	s.publish(t, fixtureSet())
	q := pack(t, new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA))
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rawExchange(t, c, q) // accepted and used
		return c
	}
	oldest, newer := dial(), dial()
	rawExchange(t, newer, q) // newer is used last: oldest is idle the longest
	third := dial()

	oldest.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := oldest.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("oldest connection: read %v, want it closed by the server", err)
	}
	for _, c := range []net.Conn{newer, third} {
		rawExchange(t, c, q)
	}
	st := s.Stats()
	open, evicted := st.TCPConnsOpen, st.TCPConnsEvicted
	if open != 2 || evicted != 1 {
		t.Fatalf("open %d, evicted %d; want 2 and 1", open, evicted)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func TestNewRejectsBadTCPCap(t *testing.T) {
	for _, n := range []int{-1, maxTCPConnsLimit + 1} {
		if _, err := New(Config{Zone: "peers.internal.", MaxTCPConns: n}); err == nil {
			t.Errorf("MaxTCPConns %d accepted", n)
		}
	}
}

// erringListener fails Accept with errs, then returns conn.
type erringListener struct {
	net.Listener
	errs []error
	conn net.Conn
}

func (l *erringListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.conn, nil
}

// TestAcceptBacksOff: EMFILE and the like wait, longer each time, instead
// of miekg/dns's immediate retry.
func TestAcceptBacksOff(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	client, server := net.Pipe()
	defer client.Close()
	inner := &erringListener{errs: []error{emfile, emfile, emfile, emfile}, conn: server}
	l := newConnLimiter(inner, 4, &stats{}, slog.New(slog.DiscardHandler))
	var waits []time.Duration
	l.sleep = func(d time.Duration, _ <-chan struct{}) { waits = append(waits, d) }
	c, err := l.Accept()
	if err != nil || c == nil {
		t.Fatalf("Accept: %v, %v", c, err)
	}
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	c.Close()
	if open, _ := l.stats.tcpOpen.Load(), 0; open != 0 {
		t.Errorf("%d connections open after close", open)
	}
}
