package droplet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// DefaultHealthTimeout is libcluster's connect timeout.
const DefaultHealthTimeout = 500 * time.Millisecond

// maxConcurrentChecks bounds the checks in flight: 100 peers that time out
// after 500 ms take 2 s, not the 50 s of checking one after another.
const maxConcurrentChecks = 32

// HealthCheck is a per-peer check: a TCP connect, or an HTTP GET that must
// answer 2xx.
type HealthCheck struct {
	HTTP    bool
	Port    uint16
	Path    string // HTTP only, starts with /
	Timeout time.Duration
}

// ParseHealthCheck reads "tcp:PORT" or "http:PORT/PATH"; "" means none.
func ParseHealthCheck(s string, timeout time.Duration) (*HealthCheck, error) {
	if s == "" {
		return nil, nil
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("health check timeout %s must be positive", timeout)
	}
	kind, rest, _ := strings.Cut(s, ":")
	hc := &HealthCheck{Timeout: timeout}
	portText := rest
	switch kind {
	case "tcp":
	case "http":
		hc.HTTP = true
		hc.Path = "/"
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			portText, hc.Path = rest[:i], rest[i:]
		}
	default:
		return nil, fmt.Errorf("%q is not tcp:PORT or http:PORT/PATH", s)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("%q has no valid port", s)
	}
	hc.Port = uint16(port)
	return hc, nil
}

type checker struct {
	hc     HealthCheck
	client *http.Client
}

func newChecker(hc HealthCheck, base *http.Client) *checker {
	return &checker{hc: hc, client: &http.Client{
		// The base transport, never the API's: the token stays with the API.
		Transport: transport(base),
		// A redirect is not a 2xx answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// run sets the verdict on every peer, checking at most
// maxConcurrentChecks at a time.
func (c *checker) run(ctx context.Context, peers []bridge.Peer) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(maxConcurrentChecks, len(peers)) {
		wg.Go(func() {
			for i := range work {
				peers[i].Health = bridge.HealthPassing
				if err := c.check(ctx, peers[i].Addrs[0]); err != nil {
					peers[i].Health = bridge.HealthCritical
				}
			}
		})
	}
	for i := range peers {
		work <- i
	}
	close(work)
	wg.Wait()
}

func (c *checker) check(ctx context.Context, addr netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, c.hc.Timeout)
	defer cancel()
	hostport := netip.AddrPortFrom(addr, c.hc.Port).String()
	if !c.hc.HTTP {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+c.hc.Path, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errors.New(resp.Status)
	}
	return nil
}
