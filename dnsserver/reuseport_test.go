//go:build linux

package dnsserver

import (
	"net"
	"testing"
)

// TestListenTCPReusePort: an explicit port joins another listener's
// SO_REUSEPORT group, as a new process beside an old one must; a port
// picked for port 0 must not, so that it never shares another process's
// listener by chance.
func TestListenTCPReusePort(t *testing.T) {
	first, err := listenTCP("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	addr := first.Addr().String()
	second, err := listenTCP(addr, false)
	if err != nil {
		t.Fatalf("joining %s with SO_REUSEPORT: %v", addr, err)
	}
	second.Close()
	if l, err := listenTCP(addr, true); err == nil {
		l.Close()
		t.Fatalf("an exclusive bind of %s, held by a listener, succeeded", addr)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener without SO_REUSEPORT joined %s", addr)
	}
}
