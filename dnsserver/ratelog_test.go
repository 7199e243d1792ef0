package dnsserver

import (
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// Issue 25, finding 10: 100,000 spoofed bad-TSIG packets wrote 21,283
// warnings, none naming the sender. A flood of them, over UDP (which
// anyone can spoof) and TCP, logs a few lines per second, each with the
// remote address, and summary lines that count every packet left out.
func TestBadTSIGFloodLogsAFewLines(t *testing.T) {
	logs := &bridgetest.Buffer{}
	s := startServer(t, Config{
		Transfer: Transfer{Allow: loopback, Key: testKey},
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	s.publish(t, fixtureSet())
	bad := TSIGKey{Name: testKey.Name, Algorithm: testKey.Algorithm, Secret: "d3Jvbmctc2VjcmV0"}
	wire := func(qtype uint16) []byte {
		m := new(dns.Msg).SetQuestion("peers.internal.", qtype)
		m.SetTsig(bad.Name, bad.Algorithm, 300, time.Now().Unix())
		w, _, err := dns.TsigGenerate(m, bad.Secret, "", false)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}

	const udpPackets, tcpQueries = 3000, 200
	start := time.Now()
	// Each packet's reply is awaited, so that the server is known to have
	// had every one: every one must be logged or counted.
	uc, err := net.Dial("udp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	udpFrom := uc.LocalAddr().String()
	req, buf := wire(dns.TypeSOA), make([]byte, 4096)
	for i := range udpPackets {
		uc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := uc.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := uc.Read(buf); err != nil {
			t.Fatalf("packet %d: no reply: %v", i, err)
		}
	}
	tc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tcpFrom := tc.LocalAddr().String()
	req = wire(dns.TypeAXFR)
	for range tcpQueries {
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		rawExchange(t, tc, req)
	}
	elapsed := time.Since(start)

	const msg = "dns request with a bad TSIG"
	suppressedRE := regexp.MustCompile(`suppressed=(\d+)`)
	var lines []string
	count := func() (logged, suppressed int) {
		lines = nil
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, msg) {
				continue
			}
			lines = append(lines, line)
			if m := suppressedRE.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				suppressed += n
			} else {
				logged++
			}
		}
		return logged, suppressed
	}
	// The last summary comes at most a second after the last packet.
	deadline := time.Now().Add(10 * time.Second)
	logged, suppressed := count()
	for logged+suppressed < udpPackets+tcpQueries && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		logged, suppressed = count()
	}
	if logged+suppressed != udpPackets+tcpQueries {
		t.Errorf("%d lines logged and %d counted as left out; want the %d bad packets, each once",
			logged, suppressed, udpPackets+tcpQueries)
	}
	// A few lines and a summary per second that the flood lasted, at most.
	if limit := (int(elapsed/logWindow) + 2) * (logBurst + 1); len(lines) > limit {
		t.Errorf("%d lines for %d bad packets in %s; want at most %d", len(lines), udpPackets+tcpQueries, elapsed, limit)
	}
	if suppressed == 0 {
		t.Error("no summary counts the lines left out")
	}
	for _, line := range lines {
		if !strings.Contains(line, "remote="+udpFrom) && !strings.Contains(line, "remote="+tcpFrom) {
			t.Errorf("line names neither sender (%s, %s): %s", udpFrom, tcpFrom, line)
		}
	}
	t.Logf("%d bad packets in %s: %d lines, %d left out", udpPackets+tcpQueries, elapsed, len(lines), suppressed)
}
