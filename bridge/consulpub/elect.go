package consulpub

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// ElectionOptions configure leader election among the replicas of one
// owner, through a Consul session lock.
type ElectionOptions struct {
	Client *api.Client
	// Key is the lock's KV key; replicas with the same key elect one
	// leader.
	Key string
	// SessionTTL is how long a leader that stops renewing (killed,
	// partitioned) keeps the lock: Consul invalidates the session between
	// one and two TTLs later. At least 10s.
	SessionTTL time.Duration
	// LockDelay keeps the lock free for this long after a session is
	// invalidated, so that a leader that merely stalled has stopped
	// writing before another starts. A clean release has no delay.
	LockDelay time.Duration
	Logger    *slog.Logger
}

// lockWait bounds each blocking read while waiting for the lock, and so
// how long a waiting replica takes to notice it should stop.
const lockWait = 2 * time.Second

// Lead runs follower while this replica does not hold the lock and leader
// while it does, one at a time, until ctx is done. When the lock is lost
// (Consul unreachable, session invalidated) leader's context is cancelled
// at once: a replica that is not sure it leads stops writing. On the way
// out the lock is released, so that another replica takes over without
// waiting for the session to expire. onRole, if set, is told every role
// change.
func Lead(ctx context.Context, opts ElectionOptions, leader, follower func(context.Context), onRole func(leading bool)) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onRole == nil {
		onRole = func(bool) {}
	}
	var backoff bridge.Retry
	for ctx.Err() == nil {
		onRole(false)
		fctx, stopFollowing := context.WithCancel(ctx)
		followed := make(chan struct{})
		go func() { defer close(followed); follower(fctx) }()

		lock, lost, err := acquire(ctx, opts)
		stopFollowing()
		<-followed
		if err != nil {
			wait := backoff.Failed()
			log.Warn("leader election failed, following meanwhile", "error", err, "retry_in", wait)
			bridge.Sleep(ctx, wait)
			continue
		}
		if lost == nil {
			return // ctx is done
		}
		backoff.Succeeded()
		log.Info("leading: polling providers and writing to Consul", "key", opts.Key)
		onRole(true)
		lctx, stopLeading := context.WithCancel(ctx)
		led := make(chan struct{})
		go func() { defer close(led); leader(lctx) }()
		select {
		case <-lost:
			log.Warn("lost leadership: stopped writing, following again")
		case <-ctx.Done():
		}
		stopLeading()
		<-led
		if err := lock.Unlock(); err != nil && !errors.Is(err, api.ErrLockNotHeld) {
			log.Debug("releasing the leader lock", "error", err)
		}
	}
}

// acquire blocks until this replica holds the lock (lost is then closed
// when it stops holding it), or ctx is done (lost is nil).
func acquire(ctx context.Context, opts ElectionOptions) (*api.Lock, <-chan struct{}, error) {
	lock, err := opts.Client.LockOpts(&api.LockOptions{
		Key:              opts.Key,
		SessionName:      "peerbridge leader",
		SessionTTL:       opts.SessionTTL.String(),
		LockDelay:        opts.LockDelay,
		LockWaitTime:     lockWait,
		MonitorRetries:   3,
		MonitorRetryTime: time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	lost, err := lock.Lock(ctx.Done())
	return lock, lost, err
}
