package dnsserver

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// testKey is a TSIG key for tests only (it guards nothing).
var testKey = &TSIGKey{Name: "xfr.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// transfer runs an AXFR or IXFR (from serial) and returns every record
// received and the number of messages, or the rcode of a refusal.
func transfer(t testing.TB, addr string, qtype uint16, serial uint32, key *TSIGKey) (rrs []dns.RR, msgs int, rcode int) {
	t.Helper()
	m := new(dns.Msg)
	if qtype == dns.TypeIXFR {
		m.SetIxfr("peers.internal.", serial, "ns.peers.internal.", "hostmaster.peers.internal.")
	} else {
		m.SetAxfr("peers.internal.")
	}
	tr := &dns.Transfer{ReadTimeout: 10 * time.Second}
	if key != nil {
		m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{key.Name: key.Secret}
	}
	ch, err := tr.In(m, addr)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	for env := range ch {
		if env.Error != nil {
			var rcode int
			if _, err := fmt.Sscanf(env.Error.Error(), "dns: bad xfr rcode: %d", &rcode); err == nil {
				return nil, msgs, rcode
			}
			t.Fatalf("transfer: %v", env.Error)
		}
		rrs = append(rrs, env.RR...)
		msgs++
	}
	return rrs, msgs, dns.RcodeSuccess
}

func TestTransferRefused(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})
	s.publish(t, fixtureSet())
	for _, qtype := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		if _, _, rcode := transfer(t, s.addr, qtype, 1, nil); rcode != dns.RcodeRefused {
			t.Errorf("%s from a client not allowed: rcode %s, want REFUSED", dns.TypeToString[qtype], dns.RcodeToString[rcode])
		}
	}
	open := startServer(t, Config{Transfer: Transfer{Allow: loopback}})
	for _, qtype := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		m := new(dns.Msg)
		m.SetQuestion("peers.internal.", qtype)
		if r := open.exchange(t, "udp", m); r.Rcode != dns.RcodeRefused {
			t.Errorf("%s over UDP: rcode %s, want REFUSED", dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
		}
	}
	m := new(dns.Msg).SetAxfr("myapp.peers.internal.")
	if r := open.exchange(t, "tcp", m); r.Rcode != dns.RcodeNotAuth {
		t.Errorf("AXFR of a name that is no zone apex: rcode %s, want NOTAUTH", dns.RcodeToString[r.Rcode])
	}
	var nonZero []TransferCount
	for _, c := range s.Stats().Transfers {
		if c.Count > 0 {
			nonZero = append(nonZero, c)
		}
	}
	want := []TransferCount{{Type: "AXFR", Result: "refused", Count: 1}, {Type: "IXFR", Result: "refused", Count: 1}}
	if !slices.Equal(nonZero, want) {
		t.Errorf("TransferCounts = %v, want %v and zeros", nonZero, want)
	}
}

// TestAXFR checks that the zone transferred is what the server answers:
// every record, the same TTLs, SOA first and last, glue, no PTR.
func TestAXFR(t *testing.T) {
	s := startServer(t, Config{
		Transfer: Transfer{Allow: loopback},
		NS: []NameServer{
			{Name: "ns1.peers.internal.", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}},
			{Name: "ns.example.com."},
		},
	})
	s.publish(t, fixtureSet())
	rrs, _, rcode := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
	if rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[rcode])
	}
	serial := s.Snapshot().Serial()
	soa := fmt.Sprintf("peers.internal. 5 IN SOA ns1.peers.internal. hostmaster.peers.internal. %d 3600 600 86400 3", serial)
	if first, last := rrs[0].String(), rrs[len(rrs)-1].String(); first != zone(t, soa)[0] || last != first {
		t.Fatalf("first and last records:\n%s\n%s\nwant both %s", first, last, soa)
	}
	want := zone(t,
		"peers.internal. 5 IN NS ns1.peers.internal.",
		"peers.internal. 5 IN NS ns.example.com.",
		"ns1.peers.internal. 5 IN A 192.0.2.53",
		"ns1.peers.internal. 5 IN AAAA 2001:db8::53",
		"myapp.peers.internal. 5 IN A 10.0.0.1",
		"myapp.peers.internal. 5 IN A 10.0.0.2",
		"myapp.peers.internal. 5 IN AAAA fd00::2",
		"myapp.peers.internal. 5 IN SRV 0 1 4369 node1.myapp.peers.internal.",
		"myapp.peers.internal. 5 IN SRV 0 1 4369 node2.myapp.peers.internal.",
		"_epmd._tcp.myapp.peers.internal. 5 IN SRV 0 1 4369 node1.myapp.peers.internal.",
		"_epmd._tcp.myapp.peers.internal. 5 IN SRV 0 1 4369 node2.myapp.peers.internal.",
		"node1.myapp.peers.internal. 5 IN A 10.0.0.1",
		`node1.myapp.peers.internal. 5 IN TXT "node=app@10.0.0.1"`,
		`node1.myapp.peers.internal. 5 IN TXT "id=node1"`,
		"node2.myapp.peers.internal. 5 IN A 10.0.0.2",
		"node2.myapp.peers.internal. 5 IN AAAA fd00::2",
		`node2.myapp.peers.internal. 5 IN TXT "node=app@10.0.0.2"`,
		`node2.myapp.peers.internal. 5 IN TXT "node=app@fd00::2"`,
		`node2.myapp.peers.internal. 5 IN TXT "id=node2"`,
	)
	if got := texts(rrs[1 : len(rrs)-1]); !slices.Equal(got, want) {
		t.Errorf("zone:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Each RRset transferred is the answer to its query.
	type key struct {
		name  string
		qtype uint16
	}
	sets := map[key][]dns.RR{}
	for _, rr := range rrs[1 : len(rrs)-1] {
		k := key{rr.Header().Name, rr.Header().Rrtype}
		sets[k] = append(sets[k], rr)
	}
	for k, set := range sets {
		r := s.query(t, "tcp", k.name, k.qtype, 0)
		if got, want := lower(texts(r.Answer)), lower(texts(set)); !slices.Equal(got, want) {
			t.Errorf("%s %s answers\n%s\nbut transfers\n%s", k.name, dns.TypeToString[k.qtype], got, want)
		}
	}
	// The glue answers too, so a zone delegated to ns1 resolves.
	if r := s.query(t, "udp", "ns1.peers.internal.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("glue A: %v", r.Answer)
	}
}

func TestAXFRLargeZone(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: loopback}})
	s.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(10000)})
	rrs, msgs, rcode := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
	if rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[rcode])
	}
	if want := s.Snapshot().recordCount() + 2; len(rrs) != want {
		t.Errorf("%d records, want %d", len(rrs), want)
	}
	if msgs < 2 {
		t.Errorf("%d messages: a large zone needs several", msgs)
	}
	if rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
		t.Errorf("not framed by the SOA: %s ... %s", rrs[0], rrs[len(rrs)-1])
	}
	t.Logf("AXFR of 10,000 peers: %d records in %d messages", len(rrs), msgs)
}

// applyIXFR applies an incremental IXFR answer to zone (records without
// the SOA), as a secondary would, and returns the serial it ends at.
func applyIXFR(t *testing.T, zone []string, rrs []dns.RR) ([]string, uint32) {
	t.Helper()
	end := rrs[0].(*dns.SOA).Serial
	body := rrs[1 : len(rrs)-1]
	deleting := false
	for _, rr := range body {
		if _, ok := rr.(*dns.SOA); ok {
			deleting = !deleting
			continue
		}
		text := rr.String()
		if deleting {
			i := slices.Index(zone, text)
			if i < 0 {
				t.Fatalf("IXFR deletes %s, which the zone does not hold", text)
			}
			zone = slices.Delete(zone, i, i+1)
		} else {
			zone = append(zone, text)
		}
	}
	slices.Sort(zone)
	return zone, end
}

func TestIXFR(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: loopback}})
	s.publish(t, fixtureSet())
	first, _, _ := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
	firstSerial := s.Snapshot().Serial()

	changed := fixtureSet()
	changed.Peers = append(slices.Clone(changed.Peers[:1]), peer("node4=10.0.0.4"))
	s.publish(t, changed.Normalize())
	s.publish(t, bridge.Set{
		Service: bridge.Service{Topology: "worker", Name: "worker", Provider: "static", Port: 9000},
		Peers:   []bridge.Peer{peer("w1=10.0.1.1")},
	})
	current, _, _ := transfer(t, s.addr, dns.TypeAXFR, 0, nil)
	serial := s.Snapshot().Serial()

	t.Run("incremental", func(t *testing.T) {
		rrs, _, rcode := transfer(t, s.addr, dns.TypeIXFR, firstSerial, nil)
		if rcode != dns.RcodeSuccess {
			t.Fatalf("rcode %s", dns.RcodeToString[rcode])
		}
		if n := strings.Count(fmt.Sprint(rrs), "SOA"); n != 6 {
			t.Errorf("%d SOA records, want 6 (two changes): %v", n, rrs)
		}
		got, end := applyIXFR(t, texts(first[1:len(first)-1]), rrs)
		if want := texts(current[1 : len(current)-1]); end != serial || !slices.Equal(got, want) {
			t.Errorf("first zone + IXFR, serial %d:\n%s\nwant serial %d:\n%s", end, strings.Join(got, "\n"), serial, strings.Join(want, "\n"))
		}
	})
	t.Run("current", func(t *testing.T) {
		rrs, _, _ := transfer(t, s.addr, dns.TypeIXFR, serial, nil)
		if len(rrs) != 1 || rrs[0].(*dns.SOA).Serial != serial {
			t.Errorf("IXFR from the current serial: %v, want the SOA alone", rrs)
		}
	})
	t.Run("unknown serial gets the whole zone", func(t *testing.T) {
		rrs, _, _ := transfer(t, s.addr, dns.TypeIXFR, firstSerial-1000, nil)
		if !slices.Equal(texts(rrs), texts(current)) {
			t.Errorf("IXFR from an unknown serial:\n%v\nwant the AXFR:\n%v", rrs, current)
		}
	})
	counts := s.Stats().Transfers
	for _, want := range []string{"IXFR incremental", "IXFR current", "IXFR full", "AXFR full"} {
		if !slices.ContainsFunc(counts, func(c TransferCount) bool { return c.Type+" "+c.Result == want }) {
			t.Errorf("TransferCounts %v: no %s", counts, want)
		}
	}
}

// TestIXFRHistoryBounded checks that the history keeps no more changes
// than twice the zone's records, beyond which the whole zone is smaller.
func TestIXFRHistoryBounded(t *testing.T) {
	s, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, Transfer: Transfer{Allow: loopback}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxDiffs {
		set := bridge.Set{Service: myapp, Peers: manyPeers(1 + i%7)}.Normalize()
		if err := s.Publish(t.Context(), set); err != nil {
			t.Fatal(err)
		}
	}
	s.xfr.mu.Lock()
	defer s.xfr.mu.Unlock()
	if n := len(s.xfr.history); n == 0 || n > maxDiffs || (n > 1 && s.xfr.changes > 2*s.Snapshot().recordCount()) {
		t.Errorf("%d diffs of %d records kept for a zone of %d", n, s.xfr.changes, s.Snapshot().recordCount())
	}
	for i := 1; i < len(s.xfr.history); i++ {
		if s.xfr.history[i].from.Serial != s.xfr.history[i-1].to.Serial {
			t.Fatalf("history not consecutive at %d", i)
		}
	}
}

func TestTSIG(t *testing.T) {
	s := startServer(t, Config{Transfer: Transfer{Allow: loopback, Key: testKey}})
	s.publish(t, fixtureSet())

	t.Run("unsigned transfer is refused", func(t *testing.T) {
		if _, _, rcode := transfer(t, s.addr, dns.TypeAXFR, 0, nil); rcode != dns.RcodeRefused {
			t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[rcode])
		}
	})
	t.Run("signed transfer", func(t *testing.T) {
		rrs, _, rcode := transfer(t, s.addr, dns.TypeAXFR, 0, testKey)
		if rcode != dns.RcodeSuccess || len(rrs) < 3 {
			t.Errorf("rcode %s, %d records", dns.RcodeToString[rcode], len(rrs))
		}
	})
	t.Run("signed large transfer, every message verified", func(t *testing.T) {
		big := startServer(t, Config{Transfer: Transfer{Allow: loopback, Key: testKey}})
		big.publish(t, bridge.Set{Service: myapp, Peers: manyPeers(3000)})
		rrs, msgs, rcode := transfer(t, big.addr, dns.TypeAXFR, 0, testKey)
		if rcode != dns.RcodeSuccess || msgs < 2 || len(rrs) != big.Snapshot().recordCount()+2 {
			t.Errorf("rcode %s, %d records in %d messages", dns.RcodeToString[rcode], len(rrs), msgs)
		}
	})
	bad := []struct {
		name  string
		key   TSIGKey
		error int
	}{
		{"wrong secret", TSIGKey{Name: testKey.Name, Algorithm: testKey.Algorithm, Secret: "d3Jvbmctc2VjcmV0"}, dns.RcodeBadSig},
		{"unknown key", TSIGKey{Name: "other.", Algorithm: testKey.Algorithm, Secret: testKey.Secret}, dns.RcodeBadKey},
		{"other algorithm", TSIGKey{Name: testKey.Name, Algorithm: dns.HmacSHA512, Secret: testKey.Secret}, dns.RcodeBadKey},
	}
	for _, network := range []string{"tcp", "udp"} {
		for _, tc := range bad {
			qtype := dns.TypeAXFR
			if network == "udp" {
				qtype = dns.TypeSOA
			}
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				m := new(dns.Msg).SetQuestion("peers.internal.", qtype)
				m.SetTsig(tc.key.Name, tc.key.Algorithm, 300, time.Now().Unix())
				wire, _, err := dns.TsigGenerate(m, tc.key.Secret, "", false)
				if err != nil {
					t.Fatal(err)
				}
				r := exchangeWire(t, network, s.addr, wire)
				tsig := r.IsTsig()
				if r.Rcode != dns.RcodeNotAuth || tsig == nil || int(tsig.Error) != tc.error || tsig.MAC != "" {
					t.Errorf("rcode %s, TSIG %v; want NOTAUTH and an unsigned TSIG with error %s",
						dns.RcodeToString[r.Rcode], tsig, dns.RcodeToString[tc.error])
				}
			})
		}
	}
	// Secondaries sign their SOA queries: the answer comes back signed,
	// which the client verifies.
	for _, network := range []string{"udp", "tcp"} {
		t.Run("signed SOA over "+network, func(t *testing.T) {
			m := new(dns.Msg).SetQuestion("peers.internal.", dns.TypeSOA)
			m.SetTsig(testKey.Name, testKey.Algorithm, 300, time.Now().Unix())
			c := &dns.Client{Net: network, TsigSecret: map[string]string{testKey.Name: testKey.Secret}, Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, s.addr)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if r.IsTsig() == nil || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != s.Snapshot().Serial() {
				t.Errorf("answer %v, TSIG %v", r.Answer, r.IsTsig())
			}
		})
	}
}

// exchangeWire sends wire and reads the reply without checking its TSIG.
func exchangeWire(t *testing.T, network, addr string, wire []byte) *dns.Msg {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := new(dns.Msg) // unpacked by hand: ReadMsg would check the TSIG
	if err := r.Unpack(rawExchange(t, nc, wire)); err != nil {
		t.Fatal(err)
	}
	return r
}

// notifyTarget is a secondary's NOTIFY port on loopback that answers
// from the given attempt on, and reports each NOTIFY it gets.
type notifyTarget struct {
	addr string
	got  chan *dns.Msg
}

func startNotifyTarget(t *testing.T, ignoreFirst int, key *TSIGKey) *notifyTarget {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ignore atomic.Int32
	ignore.Store(int32(ignoreFirst))
	nt := &notifyTarget{addr: pc.LocalAddr().String(), got: make(chan *dns.Msg, 100)}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		if key != nil && (m.IsTsig() == nil || w.TsigStatus() != nil) {
			t.Errorf("NOTIFY not signed with the key: %v %v", m.IsTsig(), w.TsigStatus())
		}
		nt.got <- m
		if ignore.Add(-1) >= 0 {
			return
		}
		r := new(dns.Msg).SetReply(m)
		if t := m.IsTsig(); t != nil {
			r.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
		}
		w.WriteMsg(r)
	})}
	if key != nil {
		srv.TsigSecret = map[string]string{key.Name: key.Secret}
	}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return nt
}

func (nt *notifyTarget) next(t *testing.T) *dns.Msg {
	t.Helper()
	select {
	case m := <-nt.got:
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no NOTIFY within 20s")
		return nil
	}
}

func TestNotify(t *testing.T) {
	for _, key := range []*TSIGKey{nil, testKey} {
		t.Run(fmt.Sprintf("signed=%v", key != nil), func(t *testing.T) {
			target := startNotifyTarget(t, 1, key)
			s := startServer(t, Config{Transfer: Transfer{Notify: []string{target.addr}, Key: key}})
			check := func(m *dns.Msg, serial uint32) {
				t.Helper()
				if m.Opcode != dns.OpcodeNotify || !m.Authoritative || len(m.Question) != 1 ||
					m.Question[0].Name != "peers.internal." || m.Question[0].Qtype != dns.TypeSOA {
					t.Fatalf("not a NOTIFY for the zone's SOA: %v", m)
				}
				if len(m.Answer) != 1 || m.Answer[0].(*dns.SOA).Serial != serial {
					t.Errorf("NOTIFY answer %v, want the SOA of serial %d", m.Answer, serial)
				}
			}
			// At start: the first attempt is ignored, the retry answered.
			first := s.Snapshot().Serial()
			check(target.next(t), first)
			check(target.next(t), first)
			// On a change.
			s.publish(t, fixtureSet())
			check(target.next(t), s.Snapshot().Serial())
			deadline := time.Now().Add(20 * time.Second)
			for {
				st := s.Stats()
				sent, acked, failed := st.NotifiesSent, st.NotifiesAcked, st.NotifiesFailed
				if sent == 3 && acked == 2 && failed == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("NotifyCounts = %d sent, %d acked, %d failed; want 3, 2, 0", sent, acked, failed)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestParseTransferSettings(t *testing.T) {
	t.Run("allow", func(t *testing.T) {
		got, err := ParseTransferAllow(" 10.0.0.5, 192.168.0.0/16 ,fd00::/8,::ffff:10.0.0.6,")
		want := []netip.Prefix{
			netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("192.168.0.0/16"),
			netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.0.0.6/32"),
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("got %v, %v", got, err)
		}
		if _, err := ParseTransferAllow("10.0.0.5,bad,10.0.0.0/33"); err == nil || !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), "/33") {
			t.Errorf("error %v, want both bad entries named", err)
		}
	})
	t.Run("notify", func(t *testing.T) {
		got, err := ParseNotify("10.0.0.7:53, [fd00::7]:5353,ns2.example.com:53")
		if err != nil || len(got) != 3 {
			t.Errorf("got %v, %v", got, err)
		}
		for _, bad := range []string{"10.0.0.7", "10.0.0.7:0", ":53", "10.0.0.7:http"} {
			if _, err := ParseNotify(bad); err == nil {
				t.Errorf("%q: no error", bad)
			}
		}
	})
	t.Run("tsig", func(t *testing.T) {
		k, err := ParseTSIGKey("XFR:hmac-sha256:" + testKey.Secret)
		if err != nil || *k != *testKey {
			t.Errorf("got %v, %v", k, err)
		}
		if k, err := ParseTSIGKey(""); k != nil || err != nil {
			t.Errorf("empty: %v, %v", k, err)
		}
		for _, bad := range []string{"xfr", "xfr:hmac-sha256", "xfr:hmac-md5:" + testKey.Secret, "xfr:hmac-sha256:not base64!", "a..b:hmac-sha256:" + testKey.Secret} {
			_, err := ParseTSIGKey(bad)
			if err == nil {
				t.Errorf("%q: no error", bad)
			} else if strings.Contains(err.Error(), "base64!") || strings.Contains(err.Error(), testKey.Secret) {
				t.Errorf("%q: the error %q shows the secret", bad, err)
			}
		}
		if s := fmt.Sprint(testKey) + fmt.Sprintf("%v %+v", *testKey, testKey); strings.Contains(s, testKey.Secret) {
			t.Errorf("the key prints its secret: %s", s)
		}
	})
	t.Run("ns", func(t *testing.T) {
		got, err := ParseNameServers("ns1.peers.internal=10.0.0.5, NS1.peers.internal.=fd00::5,ns.example.com")
		want := []NameServer{
			{Name: "ns1.peers.internal.", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}},
			{Name: "ns.example.com."},
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got %v, %v", got, err)
		}
		for _, bad := range []string{"ns1=10.0.0.300", "bad..name"} {
			if _, err := ParseNameServers(bad); err == nil {
				t.Errorf("%q: no error", bad)
			}
		}
		if err := CheckNameServers("peers.internal.", want[1:]); err != nil {
			t.Errorf("out-of-zone name server without glue: %v", err)
		}
		outside := []NameServer{{Name: "ns.example.com.", Addrs: want[0].Addrs}}
		if err := CheckNameServers("peers.internal.", outside); err == nil {
			t.Error("glue for a name outside the zone: no error")
		}
	})
}

// BenchmarkAXFR transfers a 10,000-peer zone over loopback TCP.
func BenchmarkAXFR(b *testing.B) {
	s := startServer(b, Config{Transfer: Transfer{Allow: loopback}})
	s.publish(b, bridge.Set{Service: myapp, Peers: manyPeers(10000)})
	var records int
	for b.Loop() {
		rrs, _, rcode := transfer(b, s.addr, dns.TypeAXFR, 0, nil)
		if rcode != dns.RcodeSuccess {
			b.Fatal(dns.RcodeToString[rcode])
		}
		records = len(rrs)
	}
	b.ReportMetric(float64(records), "records")
}
