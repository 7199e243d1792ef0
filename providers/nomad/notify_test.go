package nomad

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/providers/nomad/nomadtest"
)

// notifier runs p.Notify until the test ends; every wake lands on the
// returned channel.
func notifier(t *testing.T, p *Provider) <-chan struct{} {
	t.Helper()
	wakes := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Notify(ctx, func() { wakes <- struct{}{} }) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return wakes
}

func awaitWake(t *testing.T, wakes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wakes:
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake after %s", what)
	}
}

// awaitHeld waits until the fake holds n blocking queries.
func awaitHeld(t *testing.T, srv *nomadtest.Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !srv.WaitHeld(ctx, n) {
		t.Fatalf("Nomad holds %d blocking queries, want %d", srv.Held(), n)
	}
}

// TestNotifyWakes: a registration or a deregistration while the blocking
// query is open wakes the loop, in one namespace and with "*" (where the
// catalog of every namespace is watched).
func TestNotifyWakes(t *testing.T) {
	for _, ns := range []string{"default", "*"} {
		t.Run(ns, func(t *testing.T) {
			srv := nomadtest.New(t)
			srv.Register(world()...)
			p := newProvider(t, srv, Options{Namespace: ns})
			wakes := notifier(t, p)
			awaitHeld(t, srv, 1)
			if len(wakes) != 0 {
				t.Fatal("a wake before any change")
			}
			srv.Register(reg("12345678", "default", "dc1", "10.0.0.8", 20008))
			awaitWake(t, wakes, "a registration")
			awaitHeld(t, srv, 1) // the next query is open again
			srv.Deregister(reg("aaaaaaaa", "default", "dc1", "10.0.0.1", 0).ID)
			awaitWake(t, wakes, "a deregistration")
			if ns == "*" {
				awaitHeld(t, srv, 1)
				srv.Register(reg("87654321", "staging", "dc2", "10.2.0.8", 20009))
				awaitWake(t, wakes, "a registration in another namespace")
			}
			want := int64(2)
			if ns == "*" {
				want = 3
			}
			if got := p.Wakeups(); got != want {
				t.Errorf("%d wakeups, want %d", got, want)
			}
			if p.BlockingFailures() != 0 {
				t.Errorf("%d blocking failures", p.BlockingFailures())
			}
		})
	}
}

// TestNotifyAbandons: a blocking query still unanswered 10 s after its
// wait is abandoned and counted; the notifier then starts over.
func TestNotifyAbandons(t *testing.T) {
	srv := nomadtest.New(t)
	srv.Register(world()...)
	srv.SetFault(nomadtest.HangBlocking())
	p := newProvider(t, srv, Options{Wait: time.Second})
	start := time.Now()
	notifier(t, p)
	deadline := time.Now().Add(30 * time.Second)
	for p.BlockingFailures() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the hung blocking query was never abandoned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Abandoned no sooner than wait + 10 s: Nomad's jitter is no failure.
	if took := time.Since(start); took < 11*time.Second {
		t.Errorf("abandoned after %s, want at least the wait and 10 s", took)
	}
	// It starts over: a plain read, then a blocking query held again.
	srv.SetFault(nil)
	awaitHeld(t, srv, 1)
}

// TestNotifyBacksOff: while Nomad fails, or answers blocking queries at
// once without a change (a proxy dropping index), the notifier backs off
// from 1 s instead of spinning; it never wakes the loop for a failure.
func TestNotifyBacksOff(t *testing.T) {
	for name, fault := range map[string]nomadtest.Fault{
		"500": nomadtest.Status(500, "No cluster leader"),
		"403": nomadtest.Status(403, "Permission denied"),
		"index ignored": func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("X-Nomad-Index", strconv.Itoa(7))
			w.Write([]byte("[]"))
			return true
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := nomadtest.New(t)
			srv.SetFault(fault)
			p := newProvider(t, srv, Options{Wait: 30 * time.Second})
			start := time.Now()
			wakes := notifier(t, p)
			deadline := time.Now().Add(20 * time.Second)
			for p.BlockingFailures() < 2 { // 1 s, then 2 s of backoff
				if time.Now().After(deadline) {
					t.Fatalf("%d failures after 20 s", p.BlockingFailures())
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The second failure comes after a second's backoff, with one
			// request per failure (and for "index ignored" the plain read
			// before each): no spin.
			if took := time.Since(start); took < time.Second {
				t.Errorf("two failures within %s: no backoff", took)
			}
			if n := srv.Requests(); n > 5 {
				t.Errorf("%d requests for %d failures", n, p.BlockingFailures())
			}
			if len(wakes) != 0 {
				t.Errorf("%d wakes while failing", len(wakes))
			}
		})
	}
}
