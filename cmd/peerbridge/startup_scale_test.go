package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// manyTopologies sets the environment for n static topologies of two
// peers each.
func manyTopologies(t testing.TB, n int) {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%d", i)
		t.Setenv(fmt.Sprintf("PEERBRIDGE_T%d_STATIC_PEERS", i), fmt.Sprintf("a=10.%d.%d.1,b=10.%d.%d.2", i/256, i%256, i/256, i%256))
	}
	t.Setenv("PEERBRIDGE_TOPOLOGIES", strings.Join(names, ","))
	t.Setenv("PEERBRIDGE_PROVIDER", "static")
	t.Setenv("PEERBRIDGE_DNS_ADDR", "127.0.0.1:0")
	t.Setenv("PEERBRIDGE_HTTP_ADDR", "127.0.0.1:0")
}

// startTopologies sets TestStartManyTopologies' count, for measuring:
//
//	go test -run TestStartManyTopologies -v ./cmd/peerbridge -args -topologies 10000
var startTopologies = flag.Int("topologies", 0, "topologies TestStartManyTopologies starts (0: 3,000, 1,000 with -race)")

// Issue 25, finding 11: 3,000 topologies took 9.3 s to be ready and
// 10,000 more than a minute, since every topology's first publish rebuilt
// the whole zone; the first log line listed every topology (2.5 MB for
// 10,000). The bound is generous: about 3 s is usual without the race
// detector (dnsserver's BenchmarkPublishTopologies has the figures).
func TestStartManyTopologies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3,000 topologies")
	}
	n := 3000
	if *startTopologies > 0 {
		n = *startTopologies
	} else if raceEnabled {
		n = 1000 // the race detector makes configuration alone take seconds
	}
	manyTopologies(t, n)
	logs := &bridgetest.Buffer{}
	m := NewMain(io.Discard, logs)
	addrs := make(chan net.Addr, 1)
	m.OnListen = func(_, h net.Addr) { addrs <- h }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- m.Run(ctx, nil) }()
	defer func() {
		cancel()
		stopping := time.Now()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			t.Logf("stopped %s after cancel", time.Since(stopping))
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	}()
	var httpAddr string
	select {
	case a := <-addrs:
		httpAddr = a.String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("%d topologies: not listening within 60s", n)
	}
	deadline := start.Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d topologies not ready within 60s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d topologies ready after %s", n, time.Since(start))
	first, _, _ := strings.Cut(logs.String(), "\n")
	if len(first) > 16<<10 {
		t.Errorf("first log line is %d bytes for %d topologies; want a summary", len(first), n)
	}
	if !strings.Contains(first, fmt.Sprintf("topologies_not_listed=%d", n-maxLoggedTopologies)) || !strings.Contains(first, "topology.t0.") ||
		strings.Contains(first, fmt.Sprintf("topology.t%d.", n-1)) {
		t.Errorf("start-up line does not list the first topologies and count the rest: %.2000s", first)
	}
}
