package platform

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Meter counts a provider's API requests and keeps the rate limit its
// answers last reported in RateLimit-Limit and RateLimit-Remaining, which
// DigitalOcean and Hetzner both send on every answer, errors included. It
// reads them in the transport, below any SDK, so that no answer is missed
// and no SDK's own bookkeeping has to be trusted. A provider embeds it to
// offer RateLimit and Requests to metrics and to the auto poll interval.
type Meter struct {
	limit, remaining, requests atomic.Int64
}

// NewMeter returns a meter with nothing reported yet.
func NewMeter() *Meter {
	b := &Meter{}
	b.limit.Store(-1)
	b.remaining.Store(-1)
	return b
}

// Transport counts every request sent through next (nil means
// http.DefaultTransport) and records the headers of every answer.
func (b *Meter) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &meterTransport{b: b, next: next}
}

// RateLimit returns the API budget the last answer reported: requests per
// hour and what remains of them; -1 before any answer said.
func (b *Meter) RateLimit() (limit, remaining int64) {
	return b.limit.Load(), b.remaining.Load()
}

// Requests returns the number of API requests made so far.
func (b *Meter) Requests() int64 { return b.requests.Load() }

type meterTransport struct {
	b    *Meter
	next http.RoundTripper
}

func (t *meterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.b.requests.Add(1)
	resp, err := t.next.RoundTrip(r)
	if resp != nil {
		limit, lerr := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("RateLimit-Limit")), 10, 64)
		remaining, rerr := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("RateLimit-Remaining")), 10, 64)
		if lerr == nil && rerr == nil {
			t.b.limit.Store(limit)
			t.b.remaining.Store(remaining)
		}
	}
	return resp, err
}

// defaultTimeout bounds one API request when the provider's options give
// no client of their own.
const defaultTimeout = 30 * time.Second

// Client returns base, or a client with a 30 s timeout when base is nil,
// and a copy of it whose requests are counted and whose answers' rate
// limits are read. The provider talks to its API through the copy; base,
// without the meter, serves anything else (a metadata service).
func (b *Meter) Client(base *http.Client) (plain, metered *http.Client) {
	if base == nil {
		base = &http.Client{Timeout: defaultTimeout}
	}
	api := *base
	api.Transport = b.Transport(base.Transport)
	return base, &api
}

// Logger returns log, or one that discards when it is nil.
func Logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
