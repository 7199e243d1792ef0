package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// maxBackoffIntervals caps the wait after consecutive failures, so that a
// recovered API is seen within a few polls (unless the server itself asked
// for a longer pause).
const maxBackoffIntervals = 5

// defaultPollTimeout bounds one provider call or one publish, so that a hung
// API cannot stall a topology forever.
const defaultPollTimeout = 30 * time.Second

// LoopConfig wires one topology.
type LoopConfig struct {
	Service  Service
	Interval time.Duration
	Provider Provider
	// Checker, if set, health-checks every polled set before it is
	// guarded and published.
	Checker    Checker
	Publishers []Publisher
	// Budget, if set, paces polls to the API's rate limit (interval
	// "auto"): Interval is then only the pace until the provider's API
	// has reported its limit. It needs a Metered provider.
	Budget *Budget
	// Timeout bounds each provider call and each publish; 0 means 30s.
	Timeout time.Duration
	// Logger receives the loop's events; nil discards them.
	Logger *slog.Logger
	// Observer, if set, is told of every completed poll (for metrics).
	Observer PollObserver
	// RemoveAfter is how many consecutive complete polls must miss a
	// peer before it is removed; 0 means DefaultRemoveAfter, 1 removes
	// at once.
	RemoveAfter int
	// Seed, if set, is the set the topology starts with (saved by an
	// earlier run, or read from Consul): it counts as published, the
	// caller having served it already, and the first complete poll is
	// measured against it. The loop publishes nothing until its first
	// complete poll, so that nothing a seed lacks is removed anywhere
	// before then.
	Seed *Seed
}

// Seed is a set a topology starts with, before its first complete poll.
type Seed struct {
	Set    Set
	Source SetSource
	// At is when the set was last confirmed by a complete poll.
	At time.Time
}

// SetSource says where a topology's published set came from.
type SetSource string

// The sources of a published set.
const (
	SourcePoll   SetSource = "poll"   // a complete poll of this process
	SourceSaved  SetSource = "saved"  // the state file of an earlier run
	SourceConsul SetSource = "consul" // the entries this owner registered
)

// SetSources returns every SetSource, so that metrics can show each.
func SetSources() []SetSource { return []SetSource{SourcePoll, SourceSaved, SourceConsul} }

// PollObserver is told of every completed poll: how long the provider
// took and, for a failed poll, the kind of failure ("" for a success).
// It is how metrics see the loop without bridge knowing of Prometheus.
// ObservePoll is called from the loop's goroutine and must not block.
type PollObserver interface {
	ObservePoll(took time.Duration, failure FailureKind)
}

// Loop reconciles one topology: poll the provider, hold back removals
// until they are confirmed, publish to every publisher; at once, then
// every interval.
type Loop struct {
	svc        Service
	interval   time.Duration
	timeout    time.Duration
	provider   Provider
	checker    Checker
	budget     *Budget
	publishers []Publisher
	observer   PollObserver
	log        *slog.Logger
	wake       chan struct{}
	now        func() time.Time

	// Owned by the goroutine running Poll.
	current  *Set
	removals removals
	failures int
	// polled is set by the first complete poll; until then a seeded set
	// is not published again.
	polled bool

	mu     sync.Mutex
	status Status
}

// NewLoop returns a loop for one topology. It panics on a zero interval or
// a nil provider, which are programming errors: configuration is validated
// before wiring.
func NewLoop(cfg LoopConfig) *Loop {
	if cfg.Interval <= 0 || cfg.Provider == nil {
		panic("bridge: NewLoop needs a positive interval and a provider")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultPollTimeout
	}
	removeAfter := cfg.RemoveAfter
	if removeAfter <= 0 {
		removeAfter = DefaultRemoveAfter
	}
	l := &Loop{
		svc:        cfg.Service,
		interval:   cfg.Interval,
		timeout:    timeout,
		provider:   cfg.Provider,
		checker:    cfg.Checker,
		budget:     cfg.Budget,
		publishers: cfg.Publishers,
		observer:   cfg.Observer,
		log:        log.With("topology", cfg.Service.Topology),
		wake:       make(chan struct{}, 1),
		now:        time.Now,
		removals:   removals{after: removeAfter},
		status: Status{
			Topology: cfg.Service.Topology,
			Service:  cfg.Service.Name,
			Provider: cfg.Service.Provider,
			Interval: cfg.Interval,
		},
	}
	if s := cfg.Seed; s != nil {
		set := Set{Service: cfg.Service, Peers: s.Set.Peers}.Normalize()
		l.current = &set
		l.status.Peers, l.status.SetSource, l.status.SetAt = set.Peers, s.Source, s.At
	}
	return l
}

// Wake pulls the next poll forward. It never blocks; wakes that arrive
// while one is pending collapse into one.
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run polls at once and then every interval (plus up to 10% jitter, so
// that topologies and replicas drift apart) until ctx is done. Failures
// back off up to five intervals, or longer when the server says so.
func (l *Loop) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if n, ok := l.provider.(Notifier); ok {
		wg.Go(func() { n.Notify(ctx, l.Wake) })
	}

	timer := time.NewTimer(0)
	defer timer.Stop()
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-l.wake:
			// A wake never overrides a server's retry-after.
			if d := notBefore.Sub(l.now()); d > 0 {
				timer.Reset(d)
				continue
			}
		}
		delay, retryAfter := l.Poll(ctx)
		notBefore = l.now().Add(retryAfter)
		timer.Reset(jitter(delay))
	}
}

// Poll runs one reconcile step and returns the delay until the next one,
// and how long the server asked not to be polled (zero if it did not).
func (l *Loop) Poll(ctx context.Context) (next, retryAfter time.Duration) {
	start := l.now()
	peers, err := l.list(ctx)
	if errors.Is(err, ErrInconsistentListing) && ctx.Err() == nil {
		// Pages that disagree mostly mean the listing changed while it was
		// read: one more listing, at once, usually reads it whole.
		l.log.Info("listing pages disagree, listing again", "error", err)
		peers, err = l.list(ctx)
	}
	if ctx.Err() != nil {
		// Shutting down: an aborted poll is neither a success nor a failure.
		return l.interval, 0
	}
	if l.observer != nil {
		var kind FailureKind
		if err != nil {
			kind = ClassifyFailure(err)
		}
		l.observer.ObservePoll(l.now().Sub(start), kind)
	}
	if err != nil {
		if m, ok := l.provider.(Metered); ok && l.budget != nil {
			l.budget.Failed(l.now(), m)
		}
		next, retryAfter = l.failed(start, err)
		l.publish(ctx)
		return next, retryAfter
	}
	l.succeeded(Set{Service: l.svc, Peers: peers}.Normalize())
	l.polled = true
	l.publish(ctx)
	// Recorded after publishing: a topology reads as discovered (and the
	// bridge as ready) only once its peers can be queried.
	l.mu.Lock()
	l.status.LastPoll = start
	l.status.LastSuccess = start
	l.status.LastError = ""
	l.status.Failures = 0
	l.status.Held = l.removals.holding()
	l.status.Peers = l.current.Peers
	l.status.SetSource, l.status.SetAt = SourcePoll, start
	l.mu.Unlock()
	return l.pace(), 0
}

// list asks the provider for the peers and health-checks them.
func (l *Loop) list(ctx context.Context) ([]Peer, error) {
	pctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	peers, err := l.provider.Peers(pctx)
	if err == nil && l.checker != nil {
		l.checker.Check(pctx, peers)
	}
	return peers, err
}

// pace returns the interval until the next poll after a complete one:
// fixed, or what the budget allows now.
func (l *Loop) pace() time.Duration {
	m, ok := l.provider.(Metered)
	if l.budget == nil || !ok {
		return l.interval
	}
	l.interval = l.budget.Next(l.now(), m)
	l.mu.Lock()
	l.status.Interval = l.interval
	l.mu.Unlock()
	return l.interval
}

func (l *Loop) failed(start time.Time, err error) (next, retryAfter time.Duration) {
	l.failures++
	next = backoff(l.interval, l.failures)
	var ra RetryAfterError
	if errors.As(err, &ra) {
		// Capped whatever the provider read: a server's wait past
		// MaxRetryAfter would stop discovery, and the timer arithmetic
		// below must never see a duration near overflow.
		retryAfter = min(max(ra.RetryAfter(), 0), MaxRetryAfter)
		next = max(next, retryAfter)
	}
	level := slog.LevelError
	if errors.Is(err, ErrTransient) {
		level = slog.LevelWarn
	}
	msg := "poll failed, keeping the last good peer set"
	if l.current == nil {
		msg = "poll failed, no peer set yet"
	}
	l.log.Log(context.Background(), level, msg,
		"error", err, "kind", ClassifyFailure(err), "failures", l.failures, "retry_in", next.Round(time.Millisecond))

	l.mu.Lock()
	l.status.LastPoll = start
	l.status.LastError = err.Error()
	l.status.Failures = l.failures
	l.mu.Unlock()
	return next, retryAfter
}

func (l *Loop) succeeded(next Set) {
	if l.failures > 0 {
		l.log.Info("poll recovered", "after_failures", l.failures)
	}
	l.failures = 0
	polled := len(next.Peers)
	next = l.removals.apply(l.current, next)
	if held := len(next.Peers) - polled; held > 0 {
		l.log.Info("peers missing from the poll stay until further polls confirm it",
			"held", held, "remove_after", l.removals.after)
	}
	if l.current == nil || !l.current.Equal(next) {
		added, removed, changed := diffCounts(l.current, next)
		l.log.Info("peer set changed", "peers", len(next.Peers), "published", next.PublishedCount(),
			"added", added, "removed", removed, "changed", changed)
	}
	l.current = &next
}

// publish hands the current set to every publisher, after failed polls too,
// so that publishers can repair drift. Before the first complete discovery
// there is nothing to publish (a seed was served by the caller), and so
// nothing is ever removed.
func (l *Loop) publish(ctx context.Context) {
	if l.current == nil || !l.polled {
		return
	}
	var errs []error
	for _, p := range l.publishers {
		pctx, cancel := context.WithTimeout(ctx, l.timeout)
		err := p.Publish(pctx, *l.current)
		cancel()
		if err != nil && ctx.Err() == nil {
			l.log.Warn("publish failed, retrying on the next poll", "error", err)
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	l.status.PublishError = ""
	if err := errors.Join(errs...); err != nil {
		l.status.PublishError = err.Error()
	}
	l.mu.Unlock()
}

// Status returns a snapshot of the loop's state for health and status
// endpoints. Its Peers must not be modified.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// Provider returns the loop's provider, for metrics it may offer.
func (l *Loop) Provider() Provider { return l.provider }

// FailureKind sorts a failed poll, for metrics and alerts.
type FailureKind string

// The kinds of failure, from ClassifyFailure.
const (
	// FailureRateLimited: the API asked to wait (429, a rate-limit reset).
	FailureRateLimited FailureKind = "rate_limited"
	// FailureTimeout: the poll ran out of time.
	FailureTimeout FailureKind = "timeout"
	// FailureTransient: an error expected to go away (5xx, a reset
	// connection, a malformed page).
	FailureTransient FailureKind = "transient"
	// FailureCredentials: the platform rejected the credentials; it needs
	// an operator.
	FailureCredentials FailureKind = "credentials"
	// FailureError: anything else, such as a bad request.
	FailureError FailureKind = "error"
)

// FailureKinds returns every kind ClassifyFailure can return, so that
// metrics can show each one at zero before it first happens.
func FailureKinds() []FailureKind {
	return []FailureKind{FailureRateLimited, FailureTimeout, FailureTransient, FailureCredentials, FailureError}
}

// ClassifyFailure sorts a provider error into its FailureKind.
func ClassifyFailure(err error) FailureKind {
	var ra RetryAfterError
	switch {
	case errors.As(err, &ra):
		return FailureRateLimited
	case errors.Is(err, context.DeadlineExceeded):
		return FailureTimeout
	case errors.Is(err, ErrTransient):
		return FailureTransient
	case errors.Is(err, ErrCredentials):
		return FailureCredentials
	default:
		return FailureError
	}
}

// Status is what a loop reports about its topology.
type Status struct {
	Topology string
	Service  string
	Provider string
	Interval time.Duration
	// Peers is the set currently published, critical peers included.
	Peers       []Peer
	LastPoll    time.Time
	LastSuccess time.Time
	LastError   string
	Failures    int
	// Held is set while peers missing from the last polls wait for
	// their removal.
	Held         bool
	PublishError string
	// SetSource is where the published set came from; empty while the
	// topology has none.
	SetSource SetSource
	// SetAt is when the published set was last confirmed by a complete
	// poll (of this process, or of the run that saved it).
	SetAt time.Time
}

// Ready returns nil once the topology has a set to serve, polled, saved
// or from Consul, else the reason it is not ready. An API outage never
// makes a topology unready: taking replicas out of a load balancer would
// empty DNS for every client at once. How old the set is shows in
// SetAt (and the age metric and its alert).
func (s Status) Ready(time.Time) error {
	if s.SetSource == "" {
		return fmt.Errorf("topology %s: no peer set yet", s.Topology)
	}
	return nil
}

// backoff returns the wait after n consecutive failures: one interval, then
// doubling, never more than maxBackoffIntervals. It saturates instead of
// overflowing, whatever the interval.
func backoff(interval time.Duration, n int) time.Duration {
	ceiling := time.Duration(math.MaxInt64)
	if interval < ceiling/maxBackoffIntervals {
		ceiling = maxBackoffIntervals * interval
	}
	d := interval
	for i := 1; i < n && d < ceiling; i++ {
		if d > ceiling/2 {
			d = ceiling
			break
		}
		d *= 2
	}
	return min(d, ceiling)
}

// jitter lengthens d by up to 10%. It saturates instead of overflowing: a
// wait that wrapped around to a negative one would fire the timer at once,
// and the loop would spin.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	extra := rand.N(d/10 + 1)
	if d > math.MaxInt64-extra {
		return math.MaxInt64
	}
	return d + extra
}

// diffCounts counts peers added, removed and changed between two
// normalized sets, matching peers by name and id.
func diffCounts(old *Set, next Set) (added, removed, changed int) {
	var prev []Peer
	if old != nil {
		prev = old.Peers
	}
	i, j := 0, 0
	for i < len(prev) || j < len(next.Peers) {
		switch {
		case j == len(next.Peers):
			removed++
			i++
		case i == len(prev):
			added++
			j++
		default:
			switch c := comparePeers(prev[i], next.Peers[j]); {
			case c < 0:
				removed++
				i++
			case c > 0:
				added++
				j++
			default:
				if !prev[i].equal(next.Peers[j]) {
					changed++
				}
				i++
				j++
			}
		}
	}
	return added, removed, changed
}
