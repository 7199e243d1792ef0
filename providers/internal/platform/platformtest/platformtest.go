// Package platformtest holds the hostile upstreams the providers' tests
// share: another host that records every request that reaches it, a
// redirect to it, and an answer whose body never ends. Each provider's
// test puts its own fake API behind them, so that the answers are the
// platform's own.
package platformtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// Elsewhere is a second host: it records the headers of every request and
// answers with its handler (another fake of the same API, so that an
// answer from it would be taken for a listing). It is reached as
// localhost, not 127.0.0.1, so that it is another host by name as well as
// by port, as a redirect to a stranger is.
type Elsewhere struct {
	srv *httptest.Server

	mu      sync.Mutex
	headers []http.Header
}

// NewElsewhere starts a recording host in front of h.
func NewElsewhere(t testing.TB, h http.Handler) *Elsewhere {
	e := &Elsewhere{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.headers = append(e.headers, r.Header.Clone())
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// URL is the host's base URL, by the name localhost.
func (e *Elsewhere) URL() string {
	u, _ := url.Parse(e.srv.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	return "http://localhost:" + port
}

// Requests returns the headers of every request that reached the host.
func (e *Elsewhere) Requests() []http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]http.Header(nil), e.headers...)
}

// Leaks returns, of the requests that reached the host, every header that
// carries a credential: Authorization, AWS's X-Amz-Security-Token, or any
// value holding one of secrets.
func (e *Elsewhere) Leaks(secrets ...string) []string {
	var out []string
	for _, h := range e.Requests() {
		for k, vs := range h {
			for _, v := range vs {
				leak := strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "X-Amz-Security-Token")
				for _, s := range secrets {
					leak = leak || (s != "" && strings.Contains(v, s))
				}
				if leak {
					out = append(out, k+": "+v)
				}
			}
		}
	}
	return out
}

// Redirect answers a request with a 307 to the same path and query on e.
func (e *Elsewhere) Redirect(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, e.URL()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
}

// Endless returns a handler that answers 200 with contentType, prefix,
// and then item over and over until the client goes away: an API that
// streams without end. It stops after limit bytes all the same, far more
// than any cap, so that a client without one fails the test instead of
// the machine. It reports the bytes it wrote through sent, if set, when
// it ends.
func Endless(contentType, prefix, item string, limit int64, sent func(int64)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		var n int64
		defer func() {
			if sent != nil {
				sent(n)
			}
		}()
		chunk := []byte(strings.Repeat(item, max(1, (64<<10)/max(1, len(item)))))
		m, err := w.Write([]byte(prefix))
		n += int64(m)
		for err == nil && n < limit && r.Context().Err() == nil {
			m, err = w.Write(chunk)
			n += int64(m)
		}
	}
}

// CPU is the CPU time (user and system) this process has used so far:
// a benchmark of a poll reports its difference per poll ("ms-cpu/op"),
// the fake API's share included, where ns/op would count waiting too.
func CPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the CPU time per operation since start as
// ms-cpu/op.
func ReportCPU(b *testing.B, start time.Duration) {
	b.Helper()
	b.ReportMetric(float64((CPU(b)-start).Microseconds())/1000/float64(b.N), "ms-cpu/op")
}

// EqualSets reports whether two listings are the same peer set once
// normalized: the same peers, whatever their order.
func EqualSets(a, b []bridge.Peer) bool {
	return bridge.Set{Peers: a}.Normalize().Equal(bridge.Set{Peers: b}.Normalize())
}

// AddrOf returns the addresses of the peer named name as text, or
// "absent".
func AddrOf(peers []bridge.Peer, name string) string {
	for _, p := range peers {
		if p.Name == name {
			return fmt.Sprint(p.Addrs)
		}
	}
	return "absent"
}

// BenchPolls measures the polls of a provider that remembers its pages.
// Two polls go first, untimed, with next after each: a benchmark whose
// next switches between two fakes, one peer apart, has each answer every
// page once, and then finds one peer changed on every poll. Every poll
// must list want peers. It reports the process's CPU per poll
// (ReportCPU) and the pages decoded per poll, as decoded counts them;
// next nil is a steady poll.
func BenchPolls(b *testing.B, want int, poll func(context.Context) ([]bridge.Peer, error), decoded func() int64, next func()) {
	b.Helper()
	if next == nil {
		next = func() {}
	}
	for range 2 {
		if _, err := poll(context.Background()); err != nil {
			b.Fatal(err)
		}
		next()
	}
	before := decoded()
	b.ReportAllocs()
	cpu := CPU(b)
	for b.Loop() {
		peers, err := poll(context.Background())
		if err != nil || len(peers) != want {
			b.Fatalf("%d peers, %v", len(peers), err)
		}
		next()
	}
	ReportCPU(b, cpu)
	b.ReportMetric(float64(decoded()-before)/float64(b.N), "decoded-pages/op")
}
