package dnsserver

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// rawExchange sends wire over network and returns the first reply.
func rawExchange(t testing.TB, conn net.Conn, wire []byte) []byte {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, isTCP := conn.(*net.TCPConn); isTCP {
		wire = append(binary.BigEndian.AppendUint16(nil, uint16(len(wire))), wire...)
	}
	if _, err := conn.Write(wire); err != nil {
		t.Fatal(err)
	}
	return readReply(t, conn)
}

func readReply(t testing.TB, conn net.Conn) []byte {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, isTCP := conn.(*net.TCPConn); isTCP {
		var n [2]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			t.Fatalf("no reply: %v", err)
		}
		buf := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
		return buf
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return buf[:n]
}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

func rcodeOf(t testing.TB, reply []byte) int {
	t.Helper()
	h, ok := parseHeader(reply)
	if !ok {
		t.Fatalf("reply of %d bytes", len(reply))
	}
	return int(h.Bits & 0xF)
}

// responses are messages with QR set, which must never get an answer.
func responses() map[string][]byte {
	notify := new(dns.Msg).SetNotify("peers.internal.")
	notify.Response = true
	query := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
	query.Response = true
	update := new(dns.Msg).SetUpdate("peers.internal.")
	update.Response = true
	out := map[string][]byte{}
	for name, m := range map[string]*dns.Msg{"NOTIFY response": notify, "QUERY response": query, "UPDATE response": update} {
		wire, _ := m.Pack()
		out[name] = wire
	}
	// The 12-byte datagram of the issue: QR=1, opcode NOTIFY, nothing else.
	out["bare NOTIFY response header"] = []byte{0, 1, 0x80 | dns.OpcodeNotify<<3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	return out
}

// TestResponsesGetNoAnswer: a response is dropped, whatever its opcode,
// over UDP and TCP. The query sent right after it on the same socket must
// be the first thing answered: replies come in order on one socket.
func TestResponsesGetNoAnswer(t *testing.T) {
	s := fixture(t)
	for name, resp := range responses() {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+name, func(t *testing.T) {
				conn, err := net.Dial(network, s.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				q := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
				q.Id = 4242
				if network == "tcp" {
					resp = append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)
				}
				if _, err := conn.Write(resp); err != nil {
					t.Fatal(err)
				}
				reply := rawExchange(t, conn, pack(t, q))
				if h, _ := parseHeader(reply); h.Id != 4242 {
					t.Fatalf("first reply has id %d (rcode %d): the response got an answer", h.Id, h.Bits&0xF)
				}
			})
		}
	}
}

// TestNoLoopWithItself: a forged NOTIFY response whose source is the
// server's own socket. Answering it would have the server answer itself
// for ever.
func TestNoLoopWithItself(t *testing.T) {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv.Publish(t.Context(), fixtureSet())
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.serveUDP(conn, new(atomic.Int32)) }()
	t.Cleanup(func() {
		conn.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	// From the server's own address to itself, then a client's query: one
	// socket reads them in that order.
	if _, err := conn.WriteTo(responses()["bare NOTIFY response header"], conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	rawExchange(t, client, pack(t, new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)))
	for _, c := range srv.Stats().Queries {
		if c.Rcode != "NOERROR" {
			t.Errorf("the server answered a response: %+v", c)
		}
	}
}

// TestMalformedQueries: the same rcode over UDP (fast path or not) and TCP.
func TestMalformedQueries(t *testing.T) {
	s := fixture(t)
	q := func(edns bool) *dns.Msg {
		m := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
		if edns {
			m.SetEdns0(1232, false)
		}
		return m
	}
	twoOPT := q(true)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	badOption := pack(t, q(true))
	// An option whose length runs past the OPT record's data: code 10
	// (cookie), length 8, and only 4 bytes.
	badOption = append(badOption, 0, 10, 0, 8, 1, 2, 3, 4)
	binary.BigEndian.PutUint16(badOption[len(badOption)-10:], 8) // OPT RDLENGTH
	// A question cut short: name only, no type and class.
	short := pack(t, q(false))
	short = short[:len(short)-4]
	anyClass := q(false)
	anyClass.Question[0].Qclass = dns.ClassANY
	cookie := q(true)
	cookie.IsEdns0().Option = append(cookie.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})

	for _, tc := range []struct {
		name  string
		wire  []byte
		rcode int
	}{
		{"two OPT records", pack(t, twoOPT), dns.RcodeFormatError},
		{"malformed EDNS option", badOption, dns.RcodeFormatError},
		{"question without type and class", short, dns.RcodeFormatError},
		{"class ANY", pack(t, anyClass), dns.RcodeRefused},
		{"a client cookie is fine", pack(t, cookie), dns.RcodeSuccess},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				conn, err := net.Dial(network, s.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if got := rcodeOf(t, rawExchange(t, conn, tc.wire)); got != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[got], dns.RcodeToString[tc.rcode])
				}
			})
		}
	}
}

// TestTruncatedAnswersArePacked: at 2,000 peers the answers that do not
// fit in UDP come from the snapshot's packed answers, TC set.
func TestTruncatedAnswersArePacked(t *testing.T) {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv.Publish(t.Context(), bridge.Set{Service: myapp, Peers: manyPeers(2000)}.Normalize())
	snap := srv.Snapshot()
	out := make([]byte, maxUDPSize)
	for _, name := range []string{"myapp.peers.internal.", "_epmd._tcp.myapp.peers.internal."} {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			for _, size := range []uint16{0, 1232, 4096} {
				req := new(dns.Msg).SetQuestion(name, qtype)
				if size > 0 {
					req.SetEdns0(size, false)
				}
				n, _ := snap.fastAnswer(pack(t, req), out, false)
				if qtype == dns.TypeA && strings.HasPrefix(name, "_") {
					continue // NODATA, small
				}
				if n == 0 {
					t.Errorf("%s %s EDNS %d: slow path", name, dns.TypeToString[qtype], size)
					continue
				}
				if h, _ := parseHeader(out[:n]); h.Bits&flagTC == 0 || h.Ancount == 0 {
					t.Errorf("%s %s EDNS %d: TC clear or no records: %+v", name, dns.TypeToString[qtype], size, h)
				}
			}
		}
	}
}

// TestSRVOverTCP: over TCP additional records go before answer records;
// TC is set only when the answers alone do not fit, which is logged once
// per snapshot and counted every time.
func TestSRVOverTCP(t *testing.T) {
	var logs bridgetest.Buffer
	s := startServer(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(1300)})
	r := s.query(t, "tcp", "myapp.peers.internal.", dns.TypeSRV, 1232)
	if r.Truncated || len(r.Answer) != 1300 || len(r.Extra)-1 >= 1300 {
		t.Fatalf("1300 peers: TC = %v, %d answers, %d additional; want all 1300 SRV without TC, addresses as they fit",
			r.Truncated, len(r.Answer), len(r.Extra)-1)
	}

	// 2,000 SRV records of ~49 bytes (SRV targets are never compressed)
	// do not fit in 64 KiB: as many as fit, and TC.
	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(2000)})
	for range 2 {
		r = s.query(t, "tcp", "myapp.peers.internal.", dns.TypeSRV, 1232)
		if !r.Truncated || len(r.Answer) < 1300 || len(r.Extra) != 1 {
			t.Fatalf("2000 peers: TC = %v, %d answers, %d additional; want TC with answers only",
				r.Truncated, len(r.Answer), len(r.Extra)-1)
		}
	}
	if n := strings.Count(logs.String(), "too large even for TCP"); n != 1 {
		t.Errorf("%d log lines about TC over TCP, want 1:\n%s", n, logs.String())
	}
	if tcp := s.Stats().TruncatedTCP; tcp != 2 {
		t.Errorf("%d truncated TCP answers counted, want 2", tcp)
	}
}
