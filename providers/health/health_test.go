package health

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *Check
	}{
		{"", nil},
		{"tcp:4369", &Check{Port: 4369, Timeout: time.Second}},
		{"http:8080", &Check{HTTP: true, Port: 8080, Path: "/", Timeout: time.Second}},
		{"http:8080/health?x=1", &Check{HTTP: true, Port: 8080, Path: "/health?x=1", Timeout: time.Second}},
	} {
		got, err := Parse(tc.in, time.Second)
		if err != nil || (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got != nil && got.String() != tc.in && tc.in != "http:8080" {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
	for _, s := range []string{"udp:53", "tcp:", "tcp:0", "tcp:70000", "http:x/y", "tcp", "http:/health"} {
		if _, err := Parse(s, time.Second); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	if _, err := Parse("tcp:1", 0); err == nil {
		t.Error("a zero timeout accepted")
	}
}

// peers returns one peer per address, named by it.
func peers(addrs ...string) []bridge.Peer {
	out := make([]bridge.Peer, len(addrs))
	for i, a := range addrs {
		out[i] = bridge.Peer{Name: "p" + strconv.Itoa(i), ID: a}
		if a != "" {
			out[i].Addrs = []netip.Addr{netip.MustParseAddr(a)}
		}
	}
	return out
}

func verdicts(ps []bridge.Peer) map[string]bridge.Health {
	out := map[string]bridge.Health{}
	for _, p := range ps {
		out[p.ID] = p.Health
	}
	return out
}

func TestChecker(t *testing.T) {
	// Healthy peers listen on 127.0.0.1; 127.0.0.2 has nothing on the port.
	slowPath := make(chan struct{})
	defer close(slowPath)
	var auth atomic.Value
	auth.Store("")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			auth.Store(a)
		}
		switch r.URL.Path {
		case "/health":
			w.WriteHeader(http.StatusNoContent)
		case "/moved":
			http.Redirect(w, r, "/health", http.StatusFound)
		case "/slow":
			select {
			case <-slowPath:
			case <-r.Context().Done():
			}
		default:
			http.Error(w, "sick", http.StatusServiceUnavailable)
		}
	}))
	defer web.Close()
	_, port, _ := net.SplitHostPort(web.Listener.Addr().String())

	pass, crit := bridge.HealthPassing, bridge.HealthCritical
	for _, tc := range []struct {
		check string
		want  map[string]bridge.Health
	}{
		{"tcp:" + port, map[string]bridge.Health{"127.0.0.1": pass, "127.0.0.2": crit, "": crit}},
		{"http:" + port + "/health", map[string]bridge.Health{"127.0.0.1": pass, "127.0.0.2": crit, "": crit}},
		{"http:" + port + "/sick", map[string]bridge.Health{"127.0.0.1": crit, "127.0.0.2": crit, "": crit}},
		{"http:" + port + "/moved", map[string]bridge.Health{"127.0.0.1": crit, "127.0.0.2": crit, "": crit}},
		{"http:" + port + "/slow", map[string]bridge.Health{"127.0.0.1": crit, "127.0.0.2": crit, "": crit}},
	} {
		t.Run(tc.check, func(t *testing.T) {
			c, err := Parse(tc.check, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			ps := peers("127.0.0.1", "127.0.0.2", "")
			NewChecker(*c, nil).Check(context.Background(), ps)
			if got := verdicts(ps); !maps.Equal(got, tc.want) {
				t.Errorf("verdicts %v, want %v", got, tc.want)
			}
		})
	}
	if got := auth.Load().(string); got != "" {
		t.Errorf("a check sent Authorization %q to a peer", got)
	}

	t.Run("checks run concurrently, at most 32 at a time", func(t *testing.T) {
		counter := &countingTransport{}
		c, _ := Parse("http:"+port+"/slow", 300*time.Millisecond)
		many := make([]string, 80)
		for i := range many {
			many[i] = "127.0.0.1"
		}
		ps := peers(many...)
		NewChecker(*c, counter).Check(context.Background(), ps)
		for _, p := range ps {
			if p.Health != crit {
				t.Fatalf("%s: %s, want critical", p.Name, p.Health)
			}
		}
		if m := counter.max.Load(); m < 2 || m > maxConcurrent {
			t.Errorf("%d checks in flight at most, want between 2 and %d", m, maxConcurrent)
		}
	})
	t.Run("no peers", func(t *testing.T) {
		c, _ := Parse("tcp:"+port, time.Second)
		NewChecker(*c, nil).Check(context.Background(), nil)
	})
}

// countingTransport records the most requests it had in flight at once.
type countingTransport struct {
	now, max atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
	}
	return http.DefaultTransport.RoundTrip(r)
}
