package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProvider answers from its function field.
type fakeProvider struct {
	peers func(ctx context.Context) ([]Peer, error)
}

func (f fakeProvider) Peers(ctx context.Context) ([]Peer, error) { return f.peers(ctx) }

// script returns a provider that answers each poll with the next step; the
// last step repeats.
func script(steps ...any) fakeProvider {
	var mu sync.Mutex
	i := 0
	return fakeProvider{peers: func(context.Context) ([]Peer, error) {
		mu.Lock()
		defer mu.Unlock()
		step := steps[min(i, len(steps)-1)]
		i++
		if err, ok := step.(error); ok {
			return nil, err
		}
		return step.([]Peer), nil
	}}
}

// recorder is a publisher that remembers every set it was given.
type recorder struct {
	mu   sync.Mutex
	sets []Set
	err  error
}

func (r *recorder) Publish(_ context.Context, s Set) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, s)
	return r.err
}

func (r *recorder) last() (Set, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return Set{}, 0
	}
	return r.sets[len(r.sets)-1], len(r.sets)
}

func peers(n int) []Peer {
	out := make([]Peer, n)
	for i := range out {
		out[i] = Peer{Name: fmt.Sprintf("p%d", i), ID: fmt.Sprint(i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})}}
	}
	return out
}

func names(s Set) []string {
	var out []string
	for _, p := range s.Peers {
		out = append(out, p.Name)
	}
	return out
}

var svc = Service{Topology: "web", Name: "web", Provider: "fake"}

func newTestLoop(p Provider, pubs ...Publisher) *Loop {
	return NewLoop(LoopConfig{Service: svc, Interval: 10 * time.Second, Provider: p, Publishers: pubs})
}

type retryErr struct{ after time.Duration }

func (e retryErr) Error() string             { return "rate limited" }
func (e retryErr) RetryAfter() time.Duration { return e.after }
func (e retryErr) Is(target error) bool      { return target == ErrTransient }

func TestPollSteps(t *testing.T) {
	boom := errors.New("api down")
	type step struct {
		published []string // the set publishers hold after the poll
		held      bool
	}
	four, two, one := peers(4), peers(2), peers(1)
	all4 := []string{"p0", "p1", "p2", "p3"}
	tests := []struct {
		name  string
		polls []any
		want  []step
	}{
		{"first answer is published", []any{four},
			[]step{{published: all4}}},
		{"error keeps the last good set", []any{four, boom, boom},
			[]step{{published: all4}, {published: all4}, {published: all4}}},
		{"a missing peer leaves only when a second poll misses it", []any{four, two, two},
			[]step{{published: all4}, {published: all4, held: true}, {published: []string{"p0", "p1"}}}},
		{"losing more than half waits for a second poll", []any{four, one, one},
			[]step{{published: all4}, {published: all4, held: true}, {published: []string{"p0"}}}},
		{"empty waits for a second poll", []any{four, []Peer{}, []Peer{}},
			[]step{{published: all4}, {published: all4, held: true}, {published: nil}}},
		{"one bad answer between good ones changes nothing", []any{four, []Peer{}, four, four},
			[]step{{published: all4}, {published: all4, held: true}, {published: all4}, {published: all4}}},
		{"each peer's absences are counted on their own", []any{four, one, two[1:], two[1:]},
			[]step{{published: all4}, {published: all4, held: true}, {published: []string{"p0", "p1"}, held: true}, {published: []string{"p1"}}}},
		{"a peer back before its removal resets its count", []any{four, one, four, one},
			[]step{{published: all4}, {published: all4, held: true}, {published: all4}, {published: all4, held: true}}},
		{"failed polls neither confirm nor reset a held set", []any{four, one, boom, one},
			[]step{{published: all4}, {published: all4, held: true}, {published: all4, held: true}, {published: []string{"p0"}}}},
		{"growth is published at once", []any{one, four},
			[]step{{published: []string{"p0"}}, {published: all4}}},
		{"empty first answer is published", []any{[]Peer{}},
			[]step{{published: nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			l := newTestLoop(script(tc.polls...), rec)
			for i, want := range tc.want {
				l.Poll(context.Background())
				got, _ := rec.last()
				if !slices.Equal(names(got), want.published) {
					t.Fatalf("poll %d: published %v, want %v", i+1, names(got), want.published)
				}
				if st := l.Status(); st.Held != want.held {
					t.Fatalf("poll %d: held = %v, want %v", i+1, st.Held, want.held)
				}
			}
		})
	}
}

func TestNothingPublishedBeforeFirstDiscovery(t *testing.T) {
	rec := &recorder{}
	l := newTestLoop(script(errors.New("down")), rec)
	l.Poll(context.Background())
	l.Poll(context.Background())
	if _, n := rec.last(); n != 0 {
		t.Fatalf("%d publishes before any complete discovery, want 0", n)
	}
	if st := l.Status(); st.Failures != 2 || st.LastError != "down" || !st.LastSuccess.IsZero() {
		t.Fatalf("status = %+v", st)
	}
}

func TestPollDelays(t *testing.T) {
	boom := errors.New("boom")
	l := newTestLoop(script(peers(1), boom, boom, boom, boom, boom, retryErr{2 * time.Minute}, retryErr{time.Second}, peers(1)))
	want := []struct{ next, retryAfter time.Duration }{
		{10 * time.Second, 0},
		{10 * time.Second, 0},
		{20 * time.Second, 0},
		{40 * time.Second, 0},
		{50 * time.Second, 0}, // capped at five intervals
		{50 * time.Second, 0},
		{2 * time.Minute, 2 * time.Minute}, // the server's word wins over the cap
		{50 * time.Second, time.Second},
		{10 * time.Second, 0}, // recovered
	}
	for i, w := range want {
		next, ra := l.Poll(context.Background())
		if next != w.next || ra != w.retryAfter {
			t.Errorf("poll %d: next %v retry-after %v, want %v %v", i+1, next, ra, w.next, w.retryAfter)
		}
	}
}

func TestPublishErrorsAreReportedAndRetried(t *testing.T) {
	rec := &recorder{err: errors.New("consul down")}
	l := newTestLoop(script(peers(2)), rec)
	l.Poll(context.Background())
	if st := l.Status(); st.PublishError != "consul down" || st.LastSuccess.IsZero() {
		t.Fatalf("status = %+v; want the publish error and a successful discovery", st)
	}
	rec.mu.Lock()
	rec.err = nil
	rec.mu.Unlock()
	l.Poll(context.Background())
	if _, n := rec.last(); n != 2 {
		t.Fatalf("%d publishes, want one per poll", n)
	}
	if st := l.Status(); st.PublishError != "" {
		t.Fatalf("publish error %q stays after a good publish", st.PublishError)
	}
}

func TestStatusReady(t *testing.T) {
	// Third stage: ready while there is a set to serve, however old.
	now := time.Unix(1_800_000_000, 0)
	st := Status{Topology: "web", Interval: 10 * time.Second}
	if st.Ready(now) == nil {
		t.Error("ready before the first discovery")
	}
	st.SetSource, st.SetAt = SourcePoll, now.Add(-time.Hour)
	if err := st.Ready(now); err != nil {
		t.Errorf("an old set made the topology unready: %v", err)
	}
}

// notifier is a provider that also reports changes between polls.
type notifier struct {
	fakeProvider
	notify func(ctx context.Context, wake func())
}

func (n notifier) Notify(ctx context.Context, wake func()) { n.notify(ctx, wake) }

func TestRunWakeAndNotifier(t *testing.T) {
	polls := make(chan struct{}, 10)
	wakeNow := make(chan struct{})
	notifierDone := make(chan struct{})
	p := notifier{
		fakeProvider: fakeProvider{peers: func(context.Context) ([]Peer, error) {
			polls <- struct{}{}
			return peers(1), nil
		}},
		notify: func(ctx context.Context, wake func()) {
			defer close(notifierDone)
			for {
				select {
				case <-ctx.Done():
					return
				case <-wakeNow:
					wake()
					wake() // wakes collapse and never block
				}
			}
		},
	}
	l := NewLoop(LoopConfig{Service: svc, Interval: time.Hour, Provider: p})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	waitFor(t, polls, "the first poll, at once")
	wakeNow <- struct{}{}
	waitFor(t, polls, "a poll pulled forward by the notifier")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case <-notifierDone:
	default:
		t.Fatal("Run returned before the notifier ended")
	}
}

func TestWakeRespectsRetryAfter(t *testing.T) {
	polls := make(chan struct{}, 10)
	p := fakeProvider{peers: func(context.Context) ([]Peer, error) {
		polls <- struct{}{}
		return nil, retryErr{time.Hour}
	}}
	l := NewLoop(LoopConfig{Service: svc, Interval: time.Second, Provider: p})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	waitFor(t, polls, "the first poll")
	l.Wake()
	select {
	case <-polls:
		t.Fatal("a wake polled inside the server's retry-after")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestPollTimeout(t *testing.T) {
	p := fakeProvider{peers: func(ctx context.Context) ([]Peer, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("listing: %w", ctx.Err())
	}}
	l := NewLoop(LoopConfig{Service: svc, Interval: time.Second, Provider: p, Timeout: 50 * time.Millisecond})
	l.Poll(context.Background())
	if st := l.Status(); st.Failures != 1 {
		t.Fatalf("a hung provider was not cut off: %+v", st)
	}
}

func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestBackoffAndJitter(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 50, 100: 50} {
		if got := backoff(10, n); got != want {
			t.Errorf("backoff(10, %d) = %d, want %d", n, got, want)
		}
	}
	for range 100 {
		if d := jitter(time.Second); d < time.Second || d > 1100*time.Millisecond {
			t.Fatalf("jitter(1s) = %v, want within 10%% above", d)
		}
	}
}

func TestRemoveAfter(t *testing.T) {
	for _, tc := range []struct {
		after int
		want  [][]string // published after each poll: four, one, one, one
	}{
		{1, [][]string{{"p0", "p1", "p2", "p3"}, {"p0"}, {"p0"}, {"p0"}}},
		{3, [][]string{{"p0", "p1", "p2", "p3"}, {"p0", "p1", "p2", "p3"}, {"p0", "p1", "p2", "p3"}, {"p0"}}},
	} {
		rec := &recorder{}
		l := NewLoop(LoopConfig{Service: svc, Interval: time.Second, RemoveAfter: tc.after,
			Provider: script(peers(4), peers(1)), Publishers: []Publisher{rec}})
		for i, want := range tc.want {
			l.Poll(context.Background())
			if got, _ := rec.last(); !slices.Equal(names(got), want) {
				t.Errorf("REMOVE_AFTER=%d poll %d: published %v, want %v", tc.after, i+1, names(got), want)
			}
		}
	}
}

func TestCriticalPeerLeavesDNSOnlyWhenConfirmed(t *testing.T) {
	rec := &recorder{}
	sick := peers(2)
	sick[1].Health = HealthCritical
	l := newTestLoop(script(peers(2), sick), rec)
	l.Poll(context.Background())
	l.Poll(context.Background())
	if got, _ := rec.last(); got.PublishedCount() != 2 {
		t.Fatalf("one failed health check took a peer out of DNS: %d published", got.PublishedCount())
	}
	l.Poll(context.Background())
	if got, _ := rec.last(); got.PublishedCount() != 1 || len(got.Peers) != 2 || got.Peers[1].Health != HealthCritical {
		t.Fatalf("a confirmed critical peer: published %+v", got.Peers)
	}
}

func TestInconsistentListingIsListedAgainOnce(t *testing.T) {
	bad := fmt.Errorf("page 2: %w", ErrInconsistentListing)
	rec := &recorder{}
	var calls int
	base := script(peers(3), bad, peers(3), bad, bad, peers(2))
	p := fakeProvider{peers: func(ctx context.Context) ([]Peer, error) { calls++; return base.Peers(ctx) }}
	l := newTestLoop(p, rec)
	l.Poll(context.Background())
	l.Poll(context.Background()) // bad, then good again at once
	if calls != 3 || l.Status().Failures != 0 {
		t.Fatalf("after one inconsistent listing: %d calls, status %+v; want it listed again at once", calls, l.Status())
	}
	l.Poll(context.Background()) // bad twice: no news
	if st := l.Status(); calls != 5 || st.Failures != 1 {
		t.Fatalf("after two inconsistent listings: %d calls, status %+v", calls, st)
	}
	if got, _ := rec.last(); len(got.Peers) != 3 {
		t.Fatalf("an inconsistent listing changed the set: %v", names(got))
	}
}

func TestSeedIsServedUntilTheFirstCompletePoll(t *testing.T) {
	rec := &recorder{}
	seed := Set{Service: svc, Peers: peers(3)}
	at := time.Unix(1_800_000_000, 0)
	l := NewLoop(LoopConfig{Service: svc, Interval: time.Second, Publishers: []Publisher{rec},
		Provider: script(errors.New("down"), peers(2), peers(2)), Seed: &Seed{Set: seed, Source: SourceSaved, At: at}})
	if st := l.Status(); st.SetSource != SourceSaved || !st.SetAt.Equal(at) || len(st.Peers) != 3 || st.Ready(at) != nil {
		t.Fatalf("seeded status %+v", st)
	}
	l.Poll(context.Background())
	if _, n := rec.last(); n != 0 {
		t.Fatalf("a seeded loop published %d times before its first complete poll", n)
	}
	if st := l.Status(); st.Ready(at) != nil || st.SetSource != SourceSaved {
		t.Fatalf("an API outage made a seeded topology unready: %+v", st)
	}
	l.Poll(context.Background())
	if got, _ := rec.last(); len(got.Peers) != 3 || l.Status().SetSource != SourcePoll {
		t.Fatalf("first complete poll missing a saved peer published %v (source %q), want it held", names(got), l.Status().SetSource)
	}
	l.Poll(context.Background())
	if got, _ := rec.last(); len(got.Peers) != 2 {
		t.Fatalf("second poll published %v, want the peer removed", names(got))
	}
}

func TestFailureLogSaysWhetherASetIsKept(t *testing.T) {
	for _, tc := range []struct {
		polls []any
		want  string
	}{
		{[]any{errors.New("down")}, "no peer set yet"},
		{[]any{peers(1), errors.New("down")}, "keeping the last good peer set"},
	} {
		var buf bytes.Buffer
		l := NewLoop(LoopConfig{Service: svc, Interval: time.Second, Provider: script(tc.polls...),
			Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		for range tc.polls {
			l.Poll(context.Background())
		}
		last := strings.TrimSpace(buf.String())
		last = last[strings.LastIndexByte(last, '\n')+1:]
		if !strings.Contains(last, tc.want) || (tc.want == "no peer set yet" && strings.Contains(last, "keeping")) {
			t.Errorf("log %q, want %q", last, tc.want)
		}
	}
}

func TestShrinkCountsPublishedPeers(t *testing.T) {
	// Health checks failing for most peers at once must not empty DNS on
	// one poll either.
	rec := &recorder{}
	sick := peers(4)
	for i := range 3 {
		sick[i].Health = HealthCritical
	}
	l := newTestLoop(script(peers(4), sick), rec)
	l.Poll(context.Background())
	l.Poll(context.Background())
	if got, _ := rec.last(); got.PublishedCount() != 4 || !l.Status().Held {
		t.Fatalf("published %d peers, held %v; want the 4 healthy ones held", got.PublishedCount(), l.Status().Held)
	}
}

func TestNormalizeAndEqual(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.1")
	mapped := netip.MustParseAddr("::ffff:10.0.0.1")
	v6 := netip.MustParseAddr("fd00::1")
	raw := Set{Service: svc, Peers: []Peer{
		{Name: "b", ID: "2", Addrs: []netip.Addr{v6, a, mapped}},
		{Name: "a", ID: "1", Addrs: []netip.Addr{a}, Attrs: map[string]string{"region": "ams3"}},
	}}
	n := raw.Normalize()
	if names(n)[0] != "a" || !slices.Equal(n.Peers[1].Addrs, []netip.Addr{a, v6}) {
		t.Fatalf("Normalize = %+v", n)
	}
	n.Peers[0].Attrs["region"] = "nyc1"
	if raw.Peers[1].Attrs["region"] != "ams3" {
		t.Fatal("Normalize shares maps with its input")
	}
	if !raw.Normalize().Equal(raw.Normalize()) {
		t.Fatal("equal sets compare unequal")
	}
	other := raw.Normalize()
	other.Peers[0].Health = HealthCritical
	if other.Equal(raw.Normalize()) {
		t.Fatal("a health change compares equal")
	}
}

// observerFunc is a PollObserver made of a function.
type observerFunc func(time.Duration, FailureKind)

func (f observerFunc) ObservePoll(d time.Duration, k FailureKind) { f(d, k) }

func TestObserverSeesEveryPollAndItsKind(t *testing.T) {
	var got []FailureKind
	obs := observerFunc(func(d time.Duration, k FailureKind) {
		if d < 0 {
			t.Errorf("negative poll duration %v", d)
		}
		got = append(got, k)
	})
	l := NewLoop(LoopConfig{Service: svc, Interval: 10 * time.Second, Observer: obs,
		Provider: script(peers(1), errors.New("boom"), retryErr{time.Second},
			fmt.Errorf("listing: %w", ErrTransient), fmt.Errorf("page 2: %w", context.DeadlineExceeded))})
	for range 5 {
		l.Poll(context.Background())
	}
	want := []FailureKind{"", FailureError, FailureRateLimited, FailureTransient, FailureTimeout}
	if !slices.Equal(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
	for _, k := range got[1:] {
		if !slices.Contains(FailureKinds(), k) {
			t.Errorf("FailureKinds lacks %q", k)
		}
	}

	// A poll aborted by shutdown is neither a success nor a failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Poll(ctx)
	if len(got) != 5 {
		t.Fatalf("an aborted poll was observed: %q", got)
	}
}

// readyChecker is a publisher that records whether the loop already said
// the topology was discovered when the set reached it.
type readyChecker struct {
	loop      *Loop
	earlyFlag bool
}

func (r *readyChecker) Publish(context.Context, Set) error {
	if !r.loop.Status().LastSuccess.IsZero() {
		r.earlyFlag = true
	}
	return nil
}

func TestReadyOnlyAfterPublishing(t *testing.T) {
	rc := &readyChecker{}
	rc.loop = newTestLoop(script(peers(2)), rc)
	rc.loop.Poll(context.Background())
	if rc.earlyFlag {
		t.Fatal("the loop reported a complete discovery before its set was published")
	}
	if rc.loop.Status().LastSuccess.IsZero() {
		t.Fatal("no complete discovery after the poll")
	}
}

func TestRetry(t *testing.T) {
	var r Retry
	var got []time.Duration
	for range 7 {
		got = append(got, r.Failed())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	r.Succeeded()
	if d := r.Failed(); d != time.Second {
		t.Fatalf("after a success the wait is %v, want 1s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep did not stop at a done context")
	}
}
