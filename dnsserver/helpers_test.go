package dnsserver

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// testServer is a Server listening on loopback, UDP and TCP on one port.
type testServer struct {
	*Server
	addr string
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.Zone == "" {
		cfg.Zone = "peers.internal."
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 3 * time.Second
	}
	ls, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return &testServer{Server: serveOn(t, ls, cfg), addr: ls.Addr().String()}
}

// serveOn serves cfg's zone on ls until the test ends.
func serveOn(t testing.TB, ls *Listeners, cfg Config) *Server {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

func (s *testServer) publish(t testing.TB, set bridge.Set) {
	t.Helper()
	if err := s.Publish(context.Background(), set.Normalize()); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// query sends one question over network ("udp" or "tcp"), with EDNS0 and
// the given UDP size when size > 0.
func (s *testServer) query(t testing.TB, network, name string, qtype uint16, size uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if size > 0 {
		m.SetEdns0(size, false)
	}
	return s.exchange(t, network, m)
}

func (s *testServer) exchange(t testing.TB, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: dns.MaxMsgSize}
	r, _, err := c.Exchange(m, s.addr)
	if err != nil {
		t.Fatalf("exchange %s %s over %s: %v", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], network, err)
	}
	return r
}

// peer builds a peer from "name=addr,addr".
func peer(spec string) bridge.Peer {
	name, addrs, _ := strings.Cut(spec, "=")
	p := bridge.Peer{Name: name, ID: name}
	for _, a := range strings.Split(addrs, ",") {
		p.Addrs = append(p.Addrs, netip.MustParseAddr(a))
	}
	return p
}

// manyPeers returns n peers named node0..node<n-1> in 10.0.0.0/8.
func manyPeers(n int) []bridge.Peer {
	peers := make([]bridge.Peer, n)
	for i := range peers {
		peers[i] = bridge.Peer{
			Name:  fmt.Sprintf("node%d", i),
			ID:    fmt.Sprint(i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
		}
	}
	return peers
}

// zone parses records written as zone text.
func zone(t testing.TB, lines ...string) []string {
	t.Helper()
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad zone text %q: %v", l, err)
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// texts renders records in zone text, sorted, OPT left out.
func texts(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}
