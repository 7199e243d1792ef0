package bridge

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitArithmeticSaturates: no wait the loop computes wraps around to
// a negative one, which would fire its timer at once.
func TestWaitArithmeticSaturates(t *testing.T) {
	for _, d := range []time.Duration{math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64 / 10 * 9, 200 * 365 * 24 * time.Hour} {
		for range 100 {
			if got := jitter(d); got < d {
				t.Fatalf("jitter(%d) = %d, shorter than the wait", d, got)
			}
		}
	}
	for _, interval := range []time.Duration{math.MaxInt64, math.MaxInt64 / 3, 100 * 365 * 24 * time.Hour} {
		for _, n := range []int{1, 2, 3, 10, 1000} {
			if got := backoff(interval, n); got < interval {
				t.Errorf("backoff(%d, %d) = %d, shorter than one interval", interval, n, got)
			}
		}
	}
}

// TestBudgetTinyShare: PEERBRIDGE_API_BUDGET=1e-12 allows a poll every
// few centuries; the wait is the longest automatic interval, not a
// conversion that overflowed into the shortest.
func TestBudgetTinyShare(t *testing.T) {
	for _, share := range []float64{1e-12, 1e-300, 5e-324} {
		b, err := NewBudget(share, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		a := &api{limit: 5000}
		now := time.Unix(1_800_000_000, 0)
		a.request(now, 1, true)
		if d := b.Next(now, meter{a, now}); d != maxAutoInterval {
			t.Errorf("share %g: next poll in %s, want %s", share, d, maxAutoInterval)
		}
	}
}

// TestRetryAfterFarFuture: a server asking for a wait past any sensible
// one (Retry-After in the year 9999, saturated to the longest Duration)
// neither makes the loop spin nor stops it for good: it waits at most
// MaxRetryAfter, and a wake after that polls.
func TestRetryAfterFarFuture(t *testing.T) {
	var polls atomic.Int64
	polled := make(chan struct{}, 1000)
	p := fakeProvider{peers: func(context.Context) ([]Peer, error) {
		polls.Add(1)
		select {
		case polled <- struct{}{}:
		default:
		}
		return nil, retryErr{math.MaxInt64}
	}}
	l := NewLoop(LoopConfig{Service: svc, Interval: time.Second, Provider: p})
	var mu sync.Mutex
	clock := time.Now()
	l.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, polled, "the first poll")
	// An observation window, not a synchronisation: a spinning loop
	// polls thousands of times in it, a waiting one not at all.
	time.Sleep(1500 * time.Millisecond)
	if n := polls.Load(); n > 3 {
		t.Fatalf("%d polls in 1.5 s after a retry-after in the year 9999: the loop spins", n)
	}
	if st := l.Status(); st.Failures != int(polls.Load()) {
		t.Fatalf("status %+v", st)
	}

	// Within the server's (capped) wait a wake waits for it; once the
	// wait is over, a wake polls at once.
	for len(polled) > 0 {
		<-polled
	}
	before := polls.Load()
	mu.Lock()
	clock = clock.Add(MaxRetryAfter + time.Second)
	mu.Unlock()
	l.Wake()
	waitFor(t, polled, "a poll woken after the capped retry-after")
	if polls.Load() <= before {
		t.Fatal("no poll after the wake")
	}
}
