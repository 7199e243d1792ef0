package bridge

import (
	"fmt"
	"time"
)

// Metered is implemented by providers whose API reports its request
// limit in every answer (DigitalOcean's and Hetzner's RateLimit-Limit and
// RateLimit-Remaining headers): what a Budget paces polls by.
type Metered interface {
	// RateLimit returns the requests allowed per hour and what remains of
	// them, as the last answer said; -1 before any answer.
	RateLimit() (limit, remaining int64)
	// Requests returns the API requests made so far.
	Requests() int64
}

// Budget paces a topology's polls to a share of its API token's hourly
// request limit: as often as the share allows, given the requests one poll
// takes, slower when other users of the same token leave less, and never
// more often than once every Min. It is not safe for concurrent use: one
// loop owns it.
//
// Both APIs count requests in a window of one hour. What remains in it,
// less what this bridge itself asked for in the last hour, tells how much
// others use; the bridge then takes its share of what they leave:
//
//	others   = (limit - remaining) - own requests in the last hour
//	allowed  = share * (limit - others)          requests an hour
//	interval = requests per poll * 1h / allowed  (at least Min)
//
// Alone on a token a bridge so spends its share; when another user takes
// nine tenths, it slows to a tenth. After a restart the requests of the
// previous run count as another user's until they leave the window, which
// errs on the slow side. While another user ramps up faster than the
// estimate follows, a poll may meet a 429; the loop then backs off as it
// does for any rate limit.
type Budget struct {
	share    float64
	min, max time.Duration
	fallback time.Duration

	lastRequests int64
	perPoll      int64
	own          window
}

// Budget bounds.
const (
	// MinAutoInterval is the shortest automatic interval: SPEC's "never
	// more than once a second".
	MinAutoInterval = time.Second
	// maxAutoInterval keeps a starved token from stopping discovery for
	// hours: past it, the loop's backoff on 429s takes over.
	maxAutoInterval = 15 * time.Minute
)

// NewBudget returns a budget that spends share (0 < share <= 1) of the
// hourly limit, polling every fallback until the API has reported its
// limit. Give it a provider of its own: the provider's requests so far
// count as the first poll's.
func NewBudget(share float64, fallback time.Duration) (*Budget, error) {
	if !(share > 0 && share <= 1) {
		return nil, fmt.Errorf("budget share %v must be above 0 and at most 1", share)
	}
	if fallback <= 0 {
		return nil, fmt.Errorf("fallback interval %s must be positive", fallback)
	}
	return &Budget{share: share, min: MinAutoInterval, max: maxAutoInterval, fallback: fallback}, nil
}

// Next records the complete poll that just ended and returns the interval
// until the next one.
func (b *Budget) Next(now time.Time, m Metered) time.Duration {
	if n := b.record(now, m); n > 0 {
		b.perPoll = n
	}
	limit, remaining := m.RateLimit()
	if limit <= 0 || remaining < 0 || b.perPoll == 0 {
		return b.fallback
	}
	others := max(limit-remaining-b.own.sum(now), 0)
	allowed := b.share * float64(limit-others) // requests an hour
	if allowed <= 0 {
		// Others spend it all: poll as if they left half a share, and let
		// the loop's backoff on 429s slow down further.
		allowed = b.share * float64(limit) / 2
	}
	// Clamped as a float before the conversion: a tiny share (1e-12)
	// makes a wait past 292 years, whose conversion to a Duration is
	// undefined (it came out negative, and the loop polled every second).
	d := float64(b.perPoll) * float64(time.Hour) / allowed
	if !(d < float64(b.max)) { // NaN and +Inf included
		return b.max
	}
	return max(time.Duration(d), b.min)
}

// Failed records the requests of a poll that failed: they count against
// the limit, but say nothing of what a complete poll takes.
func (b *Budget) Failed(now time.Time, m Metered) { b.record(now, m) }

// record counts the requests made since the last call as the bridge's own
// and returns how many there were.
func (b *Budget) record(now time.Time, m Metered) int64 {
	reqs := m.Requests()
	var n int64
	if reqs > b.lastRequests {
		n = reqs - b.lastRequests
		b.own.add(now, n)
	}
	b.lastRequests = reqs
	return n
}

// window sums requests over the last hour in one-minute buckets: bounded
// memory, and a minute's precision is plenty against an hourly limit.
type window struct {
	minute [60]int64 // the minute each bucket counts, since the Unix epoch
	count  [60]int64
}

func (w *window) add(now time.Time, n int64) {
	m := now.Unix() / 60
	i := m % 60
	if w.minute[i] != m {
		w.minute[i], w.count[i] = m, 0
	}
	w.count[i] += n
}

func (w *window) sum(now time.Time) int64 {
	m := now.Unix() / 60
	var s int64
	for i := range w.count {
		if m-w.minute[i] < 60 {
			s += w.count[i]
		}
	}
	return s
}
