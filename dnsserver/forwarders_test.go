package dnsserver

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The forwarding recipes of README.md (this package's reference), each run with the real resolver in
// front of peerbridge: a peer resolves through it, and so does a service
// of 300 peers, whose answer comes truncated over UDP and whole over TCP.

// forwarder is a resolver started in front of peerbridge on loopback at
// upstreamPort; it returns its address.
type forwarder func(t *testing.T, upstreamPort int) string

func startDnsmasq(t *testing.T, upstreamPort int) string {
	dnsmasq := program(t, "dnsmasq", "", "apt-get install dnsmasq")
	dir := t.TempDir()
	port := freePort(t)
	// README.md's line, with loopback ports; no system resolver, no
	// hosts file, no cache, so every answer comes from peerbridge.
	conf := writeFile(t, dir, "dnsmasq.conf", `port=%d
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
cache-size=0
pid-file=
user=root
server=/peers.internal/127.0.0.1#%d
`, port, upstreamPort)
	startProgram(t, dir, dnsmasq, "--keep-in-foreground", "--log-facility=-", "--conf-file="+conf)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func startUnbound(t *testing.T, upstreamPort int) string {
	unbound := program(t, "unbound", "", "apt-get install unbound")
	dir := t.TempDir()
	port := freePort(t)
	conf := writeFile(t, dir, "unbound.conf", `server:
    interface: 127.0.0.1
    port: %[1]d
    do-ip6: no
    username: ""
    chroot: ""
    directory: "%[2]s"
    pidfile: ""
    use-syslog: no
    logfile: ""
    access-control: 127.0.0.0/8 allow
    # README.md's lines: peerbridge listens on loopback, and its zone is
    # not signed.
    do-not-query-localhost: no
    domain-insecure: "peers.internal"

stub-zone:
    name: "peers.internal"
    stub-addr: 127.0.0.1@%[3]d
`, port, dir, upstreamPort)
	startProgram(t, dir, unbound, "-d", "-c", conf)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func startCoreDNSForward(t *testing.T, upstreamPort int) string {
	coredns := corednsBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := writeFile(t, dir, "Corefile", `peers.internal:%d {
    bind 127.0.0.1
    forward . 127.0.0.1:%d
}
`, port, upstreamPort)
	startProgram(t, dir, coredns, "-conf", conf)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func TestForwarders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start forwarder
	}{
		{"dnsmasq", startDnsmasq},
		{"unbound", startUnbound},
		{"coredns", startCoreDNSForward},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			s.publish(t, fixtureSet())
			big := bigSet(300)
			big.Service.Topology, big.Service.Name = "big", "big"
			s.publish(t, big)
			_, port, _ := net.SplitHostPort(s.addr)
			upstream, _ := strconv.Atoi(port)
			addr := tc.start(t, upstream)

			// The resolver may take a moment to start listening.
			waitFor(t, 30*time.Second, tc.name+" answers", func() bool {
				r := ask("udp", addr, "node1.myapp.peers.internal.", dns.TypeA)
				return r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
			})
			r := ask("udp", addr, "node2.myapp.peers.internal.", dns.TypeAAAA)
			if r == nil || len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::2" {
				t.Errorf("AAAA of node2: %v", r)
			}
			r = ask("udp", addr, "myapp.peers.internal.", dns.TypeSRV)
			if r == nil || len(r.Answer) != 2 {
				t.Errorf("SRV of myapp: %v", r)
			}
			if r := ask("udp", addr, "nope.peers.internal.", dns.TypeA); r == nil || r.Rcode != dns.RcodeNameError {
				t.Errorf("a name that does not exist: %v, want NXDOMAIN", r)
			}

			// 300 A records do not fit a UDP answer: TC over UDP, and all of
			// them over TCP, which the resolver fetched from peerbridge over
			// TCP in turn.
			if r := ask("udp", addr, "big.peers.internal.", dns.TypeA); r == nil || !r.Truncated && len(r.Answer) != 300 {
				t.Errorf("300 peers over UDP: %v, want TC set", r)
			}
			r = ask("tcp", addr, "big.peers.internal.", dns.TypeA)
			if r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 300 {
				n := -1
				if r != nil {
					n = len(r.Answer)
				}
				t.Errorf("300 peers over TCP: %d records, want 300", n)
			}
		})
	}
}
