package dnsserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// The tests of secondaries and forwarders run the real programs (Knot,
// BIND, dnsmasq, unbound, CoreDNS) in the foreground on loopback ports,
// with their configuration in t.TempDir(). A missing program skips the
// test loudly, or fails it under CI=true.

// program finds a real program, in PATH or at path when path is set.
func program(t *testing.T, name, path, hint string) string {
	t.Helper()
	if path == "" {
		p, err := exec.LookPath(name)
		if err == nil {
			return p
		}
		path = name
	} else if _, err := os.Stat(path); err == nil {
		return path
	}
	if bridgetest.CI() {
		t.Fatalf("%s not found, and CI=true: %s", path, hint)
	}
	t.Skipf("SKIPPED: %s not found (%s); this test needs the real program", path, hint)
	return ""
}

// freePort returns a loopback port free for both UDP and TCP just now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		udp.Close()
		if err == nil {
			tcp.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startProgram runs argv in dir until the test ends, then stops it with
// SIGTERM (SIGKILL after 10s). Its output is logged when the test fails.
func startProgram(t *testing.T, dir string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	out := &bridgetest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(argv[0]), out.String())
		}
	})
}

// writeFile writes a configuration file into dir and returns its path.
func writeFile(t *testing.T, dir, name, format string, args ...any) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, fmt.Appendf(nil, format, args...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ask sends one question to addr and returns the reply, or nil when none
// came.
func ask(network, addr, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.RecursionDesired = true
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return nil
	}
	return r
}

// serial is the SOA serial addr serves for the zone, 0 when it answers
// none.
func serial(addr string) uint32 {
	r := ask("udp", addr, "peers.internal.", dns.TypeSOA)
	if r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return 0
	}
	if soa, ok := r.Answer[0].(*dns.SOA); ok {
		return soa.Serial
	}
	return 0
}

// waitFor polls cond every 5ms until it holds, failing the test after
// timeout; it returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// bigSet is myapp with n peers.
func bigSet(n int) bridge.Set {
	return bridge.Set{Service: myapp, Peers: manyPeers(n)}.Normalize()
}
