package main

import (
	"bufio"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestHTTPConnCap: more idle connections than PEERBRIDGE_HTTP_MAX_CONNS
// (keep-alive ones between requests, and ones that never send a request)
// close the longest idle; /healthz and DNS over TCP keep answering.
func TestHTTPConnCap(t *testing.T) {
	const max, keepAlive, silent = 16, 30, 10
	env := maps.Clone(quickStart)
	env["PEERBRIDGE_HTTP_MAX_CONNS"] = "16"
	setEnv(t, env)
	run := startMain(t)
	waitReady(t, "http://"+run.http)

	var conns []net.Conn
	for i := range keepAlive + silent {
		c, err := net.Dial("tcp", run.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i < keepAlive {
			// One request, then idle on a keep-alive connection.
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: peerbridge\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			resp.Body.Close()
		}
		conns = append(conns, c)
	}

	// A fresh client still gets /healthz, and DNS over TCP answers.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 3 {
		resp, err := client.Get("http://" + run.http + "/healthz")
		if err != nil {
			t.Fatalf("/healthz with %d idle connections: %v", keepAlive+silent, err)
		}
		resp.Body.Close()
	}
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA), run.dns)
	if err != nil || len(r.Answer) != 2 {
		t.Fatalf("DNS over TCP: %v %v", r, err)
	}

	// The server closed the oldest and kept the newest. A connection's
	// idle time starts when the server has marked it idle after its
	// response, which on a loaded machine may come after a newer one's:
	// the order is about right, not exact.
	closed := 0
	var closedIdx []int
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			if i < max/2 {
				t.Errorf("connection %d (of the oldest) still open", i)
			}
		case err != nil:
			closed++
			closedIdx = append(closedIdx, i)
			if i >= keepAlive+silent-max/2 {
				t.Errorf("connection %d (of the newest) closed: %v", i, err)
			}
		default:
			t.Errorf("connection %d: unexpected data", i)
		}
	}
	t.Logf("%d idle connections opened with a cap of %d: %d closed by the server %v", keepAlive+silent, max, closed, closedIdx)
	if closed < keepAlive+silent-max {
		t.Errorf("%d closed, want at least %d", closed, keepAlive+silent-max)
	}
}

func TestHTTPMaxConnsChecked(t *testing.T) {
	for _, v := range []string{"0", "-1", "2000000"} {
		env := maps.Clone(quickStart)
		env["PEERBRIDGE_HTTP_MAX_CONNS"] = v
		setEnv(t, env)
		_, err := loadConfig()
		if err == nil || !strings.Contains(err.Error(), "PEERBRIDGE_HTTP_MAX_CONNS") {
			t.Errorf("PEERBRIDGE_HTTP_MAX_CONNS=%s: %v", v, err)
		}
	}
}
