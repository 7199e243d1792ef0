// Package health checks the peers of any topology, whatever its provider:
// a TCP connect to a port, as libcluster's strategies do, or an HTTP GET
// that must answer 2xx. A peer that fails is left out of DNS and marked
// critical in Consul; the verdict is the loop's, not the provider's, so a
// static or Rancher topology can drop dead peers too.
package health

import (
	"context"
	"errors"
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

// DefaultTimeout is libcluster's connect timeout.
const DefaultTimeout = 500 * time.Millisecond

// maxConcurrent bounds the checks in flight: 100 peers that time out
// after 500 ms take 2 s, not the 50 s of checking one after another.
const maxConcurrent = 32

// Check is a per-peer check: a TCP connect, or an HTTP GET that must
// answer 2xx.
type Check struct {
	HTTP    bool
	Port    uint16
	Path    string // HTTP only, starts with /
	Timeout time.Duration
}

// Parse reads "tcp:PORT" or "http:PORT/PATH"; "" means none (nil). Its
// errors name the settings, HEALTH_CHECK and HEALTH_TIMEOUT
// (bridge.SettingError); the timeout is checked also without a check.
func Parse(s string, timeout time.Duration) (*Check, error) {
	if timeout <= 0 {
		return nil, bridge.Invalid("HEALTH_TIMEOUT", "%s must be a positive duration such as 500ms", timeout)
	}
	if s == "" {
		return nil, nil
	}
	kind, rest, _ := strings.Cut(s, ":")
	c := &Check{Timeout: timeout}
	portText := rest
	switch kind {
	case "tcp":
	case "http":
		c.HTTP = true
		c.Path = "/"
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			portText, c.Path = rest[:i], rest[i:]
		}
	default:
		return nil, bridge.Invalid("HEALTH_CHECK", "%q is not tcp:PORT or http:PORT/PATH", s)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, bridge.Invalid("HEALTH_CHECK", "%q has no valid port (1-65535): use tcp:PORT or http:PORT/PATH", s)
	}
	c.Port = uint16(port)
	return c, nil
}

// String is the check in the form Parse reads.
func (c Check) String() string {
	if c.HTTP {
		return "http:" + strconv.Itoa(int(c.Port)) + c.Path
	}
	return "tcp:" + strconv.Itoa(int(c.Port))
}

// Checker runs a Check against every peer: a bridge.Checker.
type Checker struct {
	check  Check
	client *http.Client
}

// NewChecker returns a checker. transport carries the HTTP checks; nil
// means http.DefaultTransport. It must never be an API client's: a
// provider's credentials stay with its API.
func NewChecker(c Check, transport http.RoundTripper) *Checker {
	if transport == nil {
		transport = http.DefaultTransport
	}
	return &Checker{check: c, client: &http.Client{
		Transport: transport,
		// A redirect is not a 2xx answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Check sets the verdict on every peer, checking at most maxConcurrent at
// a time. A peer passes when its first address answers.
func (c *Checker) Check(ctx context.Context, peers []bridge.Peer) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(maxConcurrent, len(peers)) {
		wg.Go(func() {
			for i := range work {
				peers[i].Health = bridge.HealthCritical
				if len(peers[i].Addrs) > 0 && c.probe(ctx, peers[i].Addrs[0]) == nil {
					peers[i].Health = bridge.HealthPassing
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

func (c *Checker) probe(ctx context.Context, addr netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, c.check.Timeout)
	defer cancel()
	hostport := netip.AddrPortFrom(addr, c.check.Port).String()
	if !c.check.HTTP {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+c.check.Path, nil)
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

var _ bridge.Checker = (*Checker)(nil)
