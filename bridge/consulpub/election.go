package consulpub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// ElectionOptions configure leader election among the replicas of one
// owner, through a Consul session lock.
//
// The session is bound to health checks rather than to a session TTL
// (which Consul enforces only after up to twice the TTL, at least 10 s):
// the agent's serfHealth, and a TTL check of this replica on its local
// agent that the replica passes every RetryPeriod. A leader that dies
// stops passing it, the check turns critical CheckTTL later, Consul
// invalidates the session and, LockDelay after that, another replica takes
// the lock. A leader steps down on its own when it has not confirmed that
// it holds the lock (a consistent read) for RenewDeadline, which is
// shorter than LockDelay: by the time any other replica can hold the lock,
// the old leader has stopped. Writes are fenced besides (Fence), so that a
// write delayed in the network cannot land after the lock changed hands.
type ElectionOptions struct {
	Client *api.Client
	// Key is the lock's KV key; replicas with the same key elect one
	// leader.
	Key string
	// CheckTTL is how long the replica's check stays passing without a
	// renewal: how soon a dead leader's session is invalidated.
	CheckTTL time.Duration
	// LockDelay keeps the lock from being taken for this long after a
	// session is invalidated. A clean release has no delay.
	LockDelay time.Duration
	// RenewDeadline is how long a leader goes on leading without
	// confirming its lock. It must be shorter than LockDelay.
	RenewDeadline time.Duration
	Logger        *slog.Logger
}

// RetryPeriod is how often a replica passes its check, a leader confirms
// its lock, and a waiting replica tries the free lock: a quarter of the
// shorter of CheckTTL and RenewDeadline, so that a few tries fit in each.
func (o ElectionOptions) RetryPeriod() time.Duration {
	return min(o.CheckTTL, o.RenewDeadline) / 4
}

// Validate checks the timings against each other and Consul's limits,
// naming each setting that is wrong (bridge.SettingError).
func (o ElectionOptions) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, bridge.Invalid(setting, format, args...))
	}
	if o.CheckTTL < time.Second || o.CheckTTL > time.Hour {
		bad("HA_CHECK_TTL", "%s must be between 1s and 1h", o.CheckTTL)
	}
	if o.LockDelay < time.Second || o.LockDelay > time.Minute {
		bad("HA_LOCK_DELAY", "%s must be between 1s and 60s", o.LockDelay)
	}
	if o.RenewDeadline < 500*time.Millisecond || o.RenewDeadline > o.LockDelay-500*time.Millisecond {
		bad("HA_RENEW_DEADLINE", "%s must be at least 500ms, and at least 500ms shorter than the lock delay (%s), "+
			"so that a leader cut off from Consul stops before another can start", o.RenewDeadline, o.LockDelay)
	}
	return errors.Join(errs...)
}

// haService is the name under which replicas register themselves (and
// their check) on their local agent.
const haService = "peerbridge"

// Lead runs leader, with this replica's fence, whenever it holds the lock,
// until ctx is done. leader's context is cancelled as soon as the replica
// is no longer sure that it leads: the lock is seen lost, or not
// confirmed for RenewDeadline. A leader that returns on its own (it
// cannot build its provider, Consul refuses its writes) gives up the
// lock: it is released at once, so that another replica leads, and this
// one stands aside for a while before it tries again. onRole, if set, is told every role change,
// before leader's context is cancelled. On the way out the lock is
// released and the replica's check deregistered, so that another replica
// takes over at once.
func Lead(ctx context.Context, opts ElectionOptions, leader func(context.Context, Fence), onRole func(leading bool)) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if onRole == nil {
		onRole = func(bool) {}
	}
	e := newElector(opts)
	e.log.Info("taking part in leader election", "key", opts.Key, "instance", e.instance,
		"check_ttl", opts.CheckTTL, "lock_delay", opts.LockDelay, "renew_deadline", opts.RenewDeadline)
	beat := make(chan struct{})
	go func() { defer close(beat); e.heartbeat(ctx) }()
	defer func() {
		<-beat
		e.leave()
	}()

	onRole(false)
	gaveUp := 0
	for ctx.Err() == nil {
		acquired, err := e.acquire(ctx)
		if err != nil {
			continue // acquire logged it and waited
		}
		e.log.Info("leading: polling providers and writing to Consul", "key", opts.Key, "session", e.session)
		onRole(true)
		lctx, stop := context.WithCancel(ctx)
		led := make(chan struct{})
		go func() { defer close(led); leader(lctx, Fence{Key: opts.Key, Session: e.session}) }()
		why := e.hold(ctx, acquired, led)
		onRole(false)
		stop()
		<-led
		if errors.Is(why, errGaveUp) {
			gaveUp++
			wait := e.giveUp(ctx, gaveUp)
			e.log.Warn("gave up the leader lock: this replica cannot lead, another may", "stand_aside", wait)
			bridge.Sleep(ctx, wait)
			continue
		}
		if why != nil {
			e.log.Warn("stepped down: stopped polling and writing, serving DNS from the catalog", "reason", why)
		} else {
			gaveUp = 0
		}
	}
	return nil
}

// errGaveUp is hold's reason when the leader returned on its own.
var errGaveUp = errors.New("the leader gave up")

// giveUp releases the lock and returns how long to stand aside: long
// enough for a waiting replica to take the lock (a failover's CheckTTL
// plus LockDelay), doubled for each time in a row, up to a minute.
func (e *elector) giveUp(ctx context.Context, times int) time.Duration {
	rctx, cancel := context.WithTimeout(ctx, 2*e.retry)
	defer cancel()
	if _, _, err := e.kv.Release(&api.KVPair{Key: e.opts.Key, Session: e.session}, (&api.WriteOptions{}).WithContext(rctx)); err != nil {
		e.log.Warn("releasing the leader lock", "error", err)
	}
	wait := e.opts.CheckTTL + e.opts.LockDelay
	for i := 1; i < times && wait < time.Minute; i++ {
		wait *= 2
	}
	return min(wait, time.Minute)
}

type elector struct {
	opts              ElectionOptions
	log               *slog.Logger
	agent             *api.Agent
	kv                *api.KV
	sessions          *api.Session
	instance, checkID string
	retry             time.Duration
	session           string // the current session, "" for none
}

func newElector(opts ElectionOptions) *elector {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	instance := strings.Trim(host+"-"+hex.EncodeToString(b[:]), "-")
	return &elector{
		opts: opts, log: log, agent: opts.Client.Agent(), kv: opts.Client.KV(), sessions: opts.Client.Session(),
		instance: instance, checkID: haService + ":" + instance, retry: opts.RetryPeriod(),
	}
}

func (e *elector) serviceID() string { return haService + "-" + e.instance }

// register puts the replica and its TTL check on the local agent, passing.
// A replica that vanishes without deregistering is removed by the agent a
// minute after its check turned critical.
func (e *elector) register(ctx context.Context) error {
	reg := &api.AgentServiceRegistration{
		ID: e.serviceID(), Name: haService, Meta: map[string]string{"peerbridge-ha-key": e.opts.Key},
		Check: &api.AgentServiceCheck{
			CheckID: e.checkID, Name: "peerbridge leader election heartbeat", TTL: e.opts.CheckTTL.String(),
			Status: api.HealthPassing, DeregisterCriticalServiceAfter: "1m",
		},
	}
	return e.agent.ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx))
}

// heartbeat passes the replica's check every retry period until ctx is
// done, registering it again when the agent does not know it (a restarted
// agent).
func (e *elector) heartbeat(ctx context.Context) {
	tick := time.NewTicker(e.retry)
	defer tick.Stop()
	failing, registered := false, false
	for {
		rctx, cancel := context.WithTimeout(ctx, e.retry)
		var err error
		if registered {
			err = e.agent.UpdateTTLOpts(e.checkID, "alive", api.HealthPassing, (&api.QueryOptions{}).WithContext(rctx))
		}
		if (!registered || err != nil) && ctx.Err() == nil {
			err = e.register(rctx)
			registered = err == nil
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			e.log.Warn("cannot pass the election check on the local Consul agent", "error", err)
		case err == nil && failing:
			e.log.Info("election check passing again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// acquire returns once this replica holds the lock, with the time the
// successful request was sent: the lock is known held from then on. It
// returns an error, after waiting a while, when Consul fails, and when ctx
// is done.
func (e *elector) acquire(ctx context.Context) (time.Time, error) {
	var backoff bridge.Retry
	fail := func(what string, err error) (time.Time, error) {
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		wait := min(backoff.Failed(), 4*e.retry)
		e.log.Warn(what, "error", err, "retry_in", wait)
		bridge.Sleep(ctx, wait)
		return time.Time{}, err
	}
	var index uint64
	free := false
	for ctx.Err() == nil {
		if e.session == "" {
			// Every request has a deadline: one forwarded to a Raft leader
			// that has just been cut off would hang for Consul's RPC timeout.
			wctx, cancel := context.WithTimeout(ctx, 2*e.retry)
			id, _, err := e.sessions.Create(&api.SessionEntry{
				Name:          "peerbridge leader " + e.instance,
				LockDelay:     e.opts.LockDelay,
				Behavior:      api.SessionBehaviorRelease,
				NodeChecks:    []string{"serfHealth"},
				ServiceChecks: []api.ServiceCheck{{ID: e.checkID}},
			}, (&api.WriteOptions{}).WithContext(wctx))
			cancel()
			if err != nil {
				// Typically the check was just registered or renewed and the
				// agent has not told the servers yet.
				return fail("cannot create a Consul session for the election, following meanwhile", err)
			}
			e.session = id
		}
		sent := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 2*e.retry)
		ok, _, err := e.kv.Acquire(&api.KVPair{Key: e.opts.Key, Value: []byte(e.instance), Session: e.session},
			(&api.WriteOptions{}).WithContext(wctx))
		cancel()
		if err != nil {
			if strings.Contains(strings.ToLower(err.Error()), "invalid session") {
				e.session = "" // invalidated meanwhile: start a new one
			}
			return fail("cannot take part in the election, following meanwhile", err)
		}
		if ok {
			return sent, nil
		}
		// Someone holds the lock: wait for a change. Nobody holds it: the
		// lock delay is on; try again every retry period. The read is only a
		// wake-up (the acquire decides), so any server may answer it: a
		// blocking query forwarded to a Raft leader that has just been cut
		// off would hang until Consul's RPC timeout, a minute or more.
		q := &api.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second, AllowStale: true}
		if free {
			if !bridge.Sleep(ctx, e.retry) {
				break
			}
			q.WaitIndex = 0
		}
		rctx, cancel := context.WithTimeout(ctx, q.WaitTime+5*time.Second)
		pair, meta, err := e.kv.Get(e.opts.Key, q.WithContext(rctx))
		cancel()
		if err != nil {
			return fail("watching the leader lock failed, following meanwhile", err)
		}
		backoff.Succeeded()
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		free = pair == nil || pair.Session == ""
	}
	return time.Time{}, ctx.Err()
}

// hold confirms that the session still holds the lock, every retry period,
// and returns why leading must stop: the lock is seen held by another or
// by nobody, or no confirmation was sent within RenewDeadline of the last
// successful one (acquired, at first). It returns nil when ctx is done.
func (e *elector) hold(ctx context.Context, acquired time.Time, led <-chan struct{}) error {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	session := e.session
	confirmed := make(chan time.Time, 1)
	lost := make(chan bool, 1) // true: the session's hold was released
	go func() {
		tick := time.NewTicker(e.retry)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
			}
			sent := time.Now()
			rctx, cancel := context.WithTimeout(hctx, e.retry)
			pair, _, err := e.kv.Get(e.opts.Key, (&api.QueryOptions{RequireConsistent: true}).WithContext(rctx))
			cancel()
			switch {
			case hctx.Err() != nil:
				return
			case err != nil:
				e.log.Debug("leader lock not confirmed", "error", err)
			case pair == nil || pair.Session != session:
				lost <- pair == nil || pair.Session == ""
				return
			default:
				select {
				case <-confirmed:
				default:
				}
				confirmed <- sent
			}
		}
	}()
	last := acquired
	deadline := time.NewTimer(time.Until(last.Add(e.opts.RenewDeadline)))
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-led:
			return errGaveUp
		case released := <-lost:
			if released {
				// Invalidated, or released by hand: the next term needs a new
				// session (a valid one would simply take the lock again).
				e.session = ""
			}
			return errors.New("the lock is no longer this replica's")
		case t := <-confirmed:
			if t.After(last) {
				last = t
				deadline.Reset(time.Until(last.Add(e.opts.RenewDeadline)))
			}
		case <-deadline.C:
			return fmt.Errorf("the lock was not confirmed for %s", e.opts.RenewDeadline)
		}
	}
}

// leave releases the lock (without lock delay, so that another replica
// takes over at once), destroys the session and deregisters the replica,
// each best effort: what fails expires on its own.
func (e *elector) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w := (&api.WriteOptions{}).WithContext(ctx)
	if e.session != "" {
		if _, _, err := e.kv.Release(&api.KVPair{Key: e.opts.Key, Session: e.session}, w); err != nil {
			e.log.Debug("releasing the leader lock", "error", err)
		}
		if _, err := e.sessions.Destroy(e.session, w); err != nil {
			e.log.Debug("destroying the election session", "error", err)
		}
	}
	if err := e.agent.ServiceDeregisterOpts(e.serviceID(), (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		e.log.Debug("deregistering from the local agent", "error", err)
	}
}
