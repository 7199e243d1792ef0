// Package dnstest starts peerbridge's DNS server on loopback for tests
// that query it over a real socket (with dig or miekg/dns), so that each
// end-to-end test does not wire its own. It lives apart from bridgetest,
// which dnsserver's own tests import.
package dnstest

import (
	"context"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/dnsserver"
)

// Serve starts a server for the zone peers.internal. (TTLs of 5 s) on a
// free loopback port, and stops it when the test ends. It returns the
// server, a bridge.Publisher, and its address, host:port.
func Serve(t testing.TB) (*dnsserver.Server, string) {
	t.Helper()
	srv, err := dnsserver.New(dnsserver.Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := dnsserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns server: %v", err)
		}
	})
	return srv, ls.Addr().String()
}
