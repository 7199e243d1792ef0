package bridge

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// api models a token's hourly window as DigitalOcean and Hetzner count
// it: every request of the last hour, the bridge's and another user's,
// counts against the limit, and a request past it is refused (429).
type api struct {
	limit      int64
	events     []event // oldest first
	used, own  int64   // in the window
	requests   int64   // the bridge's, ever
	ownRefused int64   // the bridge's requests refused
}

type event struct {
	at  time.Time
	own bool
}

// advance drops the requests that left the window.
func (a *api) advance(now time.Time) {
	cut := 0
	for ; cut < len(a.events) && now.Sub(a.events[cut].at) >= time.Hour; cut++ {
		a.used--
		if a.events[cut].own {
			a.own--
		}
	}
	a.events = a.events[cut:]
}

func (a *api) request(now time.Time, n int64, own bool) {
	a.advance(now)
	for range n {
		if a.used >= a.limit {
			if own {
				a.ownRefused++
			}
			continue
		}
		a.events = append(a.events, event{at: now, own: own})
		a.used++
		if own {
			a.own++
			a.requests++
		}
	}
}

// meter is what the provider would report after its poll.
type meter struct {
	a   *api
	now time.Time
}

func (m meter) RateLimit() (int64, int64) { m.a.advance(m.now); return m.a.limit, m.a.limit - m.a.used }
func (m meter) Requests() int64           { return m.a.requests }

// simulate runs a bridge polling with pages requests per poll, next to
// another user spending othersPerHour, for six hours of virtual time,
// and returns the bridge's requests, its requests refused and its mean
// interval, all in the last hour.
func simulate(t *testing.T, limit, pages int64, share, othersPerHour float64) (lastHour, refused int64, meanInterval time.Duration) {
	t.Helper()
	b, err := NewBudget(share, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := &api{limit: limit}
	start := time.Unix(1_800_000_000, 0)
	now := start
	var othersOwed float64
	var polls int64
	var spent time.Duration
	for now.Sub(start) < 6*time.Hour {
		if now.Sub(start) < 5*time.Hour {
			// Refusals while another user ramps up cannot be foreseen;
			// only the steady last hour counts.
			a.ownRefused = 0
		}
		a.request(now, pages, true)
		d := b.Next(now, meter{a, now})
		if now.Sub(start) >= 5*time.Hour {
			polls++
			spent += d
		}
		// The other user's requests, spread evenly over the interval.
		for end := now.Add(d); now.Before(end); {
			step := min(time.Second, end.Sub(now))
			now = now.Add(step)
			othersOwed += othersPerHour * step.Hours()
			whole := int64(othersOwed)
			othersOwed -= float64(whole)
			a.request(now, whole, false)
		}
	}
	a.advance(now)
	return a.own, a.ownRefused, spent / time.Duration(max(polls, 1))
}

func TestBudgetSpendsItsShare(t *testing.T) {
	for _, tc := range []struct {
		limit, pages int64
		share        float64
	}{
		{5000, 1, 0.5},  // DigitalOcean, 200 droplets
		{5000, 10, 0.5}, // DigitalOcean, 2,000 droplets
		{3600, 1, 0.5},  // Hetzner, 50 servers
		{3600, 4, 0.25},
	} {
		t.Run(fmt.Sprintf("limit=%d/pages=%d/share=%v", tc.limit, tc.pages, tc.share), func(t *testing.T) {
			used, refused, mean := simulate(t, tc.limit, tc.pages, tc.share, 0)
			ratio := float64(used) / (tc.share * float64(tc.limit))
			t.Logf("spent %d requests in the last hour: %.0f%% of the budget, mean interval %s", used, 100*ratio, mean)
			if ratio < 0.6 || ratio > 1.15 {
				t.Errorf("spent %.0f%% of the budget, want 60%% to 115%%", 100*ratio)
			}
			if refused != 0 {
				t.Errorf("%d requests refused: the budget ran past the limit", refused)
			}
		})
	}
}

func TestBudgetYieldsToOtherUsers(t *testing.T) {
	alone, _, aloneMean := simulate(t, 5000, 1, 0.5, 0)
	crowded, refused, crowdedMean := simulate(t, 5000, 1, 0.5, 4500)
	if refused != 0 {
		t.Errorf("%d of the bridge's requests refused", refused)
	}
	t.Logf("alone: %d requests an hour (interval %s); another user at 4,500 an hour: %d (interval %s)",
		alone, aloneMean, crowded, crowdedMean)
	if 3*crowded > alone {
		t.Errorf("with another user leaving little the bridge made %d requests, more than a third of %d", crowded, alone)
	}
	// A whole token: the bridge takes what remains and leaves a margin.
	used, refused, mean := simulate(t, 5000, 1, 1, 0)
	t.Logf("share 1 alone: %d requests an hour (interval %s)", used, mean)
	if refused != 0 || used > 5000 {
		t.Errorf("share 1: %d requests an hour, %d refused", used, refused)
	}
}

func TestBudgetBounds(t *testing.T) {
	for _, share := range []float64{0, -1, 1.5} {
		if _, err := NewBudget(share, time.Second); err == nil {
			t.Errorf("NewBudget(%v) accepted", share)
		}
	}
	b, _ := NewBudget(1, 10*time.Second)
	a := &api{limit: 1_000_000}
	now := time.Unix(1_800_000_000, 0)
	if d := b.Next(now, meter{&api{limit: -1, requests: 1}, now}); d != 10*time.Second {
		t.Errorf("before the API reported a limit: %s, want the fallback 10s", d)
	}
	for range 3 {
		a.request(now, 1, true)
		if d := b.Next(now, meter{a, now}); d < MinAutoInterval && d != 10*time.Second {
			t.Errorf("interval %s, under the minimum of %s", d, MinAutoInterval)
		}
		now = now.Add(time.Second)
	}
}

// meteredProvider is a provider whose API reports its limit, as the
// droplet and hcloud providers do: each poll costs pages requests.
type meteredProvider struct {
	pages            int64
	fail             bool
	requests         int64
	limit, remaining int64
}

func (p *meteredProvider) Peers(context.Context) ([]Peer, error) {
	p.requests += p.pages
	if p.fail {
		return nil, errors.New("API down")
	}
	return peers(3), nil
}
func (p *meteredProvider) RateLimit() (int64, int64) { return p.limit, p.remaining }
func (p *meteredProvider) Requests() int64           { return p.requests }

func TestLoopPacesByBudget(t *testing.T) {
	p := &meteredProvider{pages: 2, limit: 3600, remaining: 3600}
	b, _ := NewBudget(0.5, 10*time.Second)
	l := NewLoop(LoopConfig{Service: Service{Topology: "web", Name: "web"}, Interval: 10 * time.Second, Provider: p, Budget: b})
	ctx := context.Background()
	// 2 requests a poll, 1,800 an hour allowed: every 4s.
	for i := range 2 {
		if next, _ := l.Poll(ctx); next != 4*time.Second {
			t.Fatalf("poll %d: next in %s, want 4s", i+1, next)
		}
	}
	if got := l.Status().Interval; got != 4*time.Second {
		t.Errorf("status interval %s, want 4s", got)
	}
	// A failed poll backs off from the paced interval, and its requests
	// count as the bridge's own but not as a poll's size.
	p.fail = true
	if next, _ := l.Poll(ctx); next != 4*time.Second {
		t.Errorf("after a failure: next in %s, want one paced interval (4s)", next)
	}
	p.fail, p.pages = false, 1
	if next, _ := l.Poll(ctx); next != 2*time.Second {
		t.Errorf("1 request a poll: next in %s, want 2s", next)
	}
}
