package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// startHTTP serves srv on loopback until the test ends.
func startHTTP(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestHTTPClosesIdleConnections: a keep-alive connection that stays idle
// is closed; every timeout is set.
func TestHTTPClosesIdleConnections(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv := newHTTPServer(ok, slog.New(slog.DiscardHandler))
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		if d <= 0 || d > 2*time.Minute {
			t.Errorf("%s = %v, want a bound of at most 2m", name, d)
		}
	}
	// The real idle timeout, shortened: the test checks that it closes,
	// not how long it takes.
	srv.IdleTimeout = 50 * time.Millisecond
	addr := startHTTP(t, srv)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: peerbridge\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server closed at once; want keep-alive, then an idle close")
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: %v, want closed by the server (EOF)", err)
	}
}

// TestHTTPErrorsAreJSON: net/http's own error lines go through slog, so
// PEERBRIDGE_LOG_FORMAT=json stays JSON.
func TestHTTPErrorsAreJSON(t *testing.T) {
	var logs bridgetest.Buffer
	twice := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.WriteHeader(http.StatusOK) // net/http logs "superfluous response.WriteHeader call"
	})
	addr := startHTTP(t, newHTTPServer(twice, newLogger(&logs, slog.LevelInfo, "json")))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "superfluous") {
		if time.Now().After(deadline) {
			t.Fatalf("no error line logged: %q", logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log, with a deadline
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("not JSON: %q", line)
		}
	}
}

// TestDNSMaxTCPConnsChecked: the cap is checked by dnsserver and the
// problem named by its variable.
func TestDNSMaxTCPConnsChecked(t *testing.T) {
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1", "PEERBRIDGE_DNS_MAX_TCP_CONNS": "-1",
	})
	_, err := loadConfig()
	if err == nil || !strings.Contains(err.Error(), "PEERBRIDGE_DNS_MAX_TCP_CONNS: -1 is not between 1 and") {
		t.Fatalf("loadConfig() = %v, want a problem naming PEERBRIDGE_DNS_MAX_TCP_CONNS", err)
	}
}
