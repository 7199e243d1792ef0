package bridge

import (
	"context"
	"time"
)

// Retry is the backoff of the retry loops that talk to Consul or the
// Rancher metadata service: each failure doubles the wait, from one second
// up to thirty, whatever the poll interval, so that a service that comes
// back is seen soon; a success starts over. (The reconcile loop backs off
// in poll intervals instead: see Loop.)
type Retry struct{ wait time.Duration }

const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// Failed returns how long to wait after one more failure.
func (r *Retry) Failed() time.Duration {
	r.wait = min(max(2*r.wait, retryMin), retryMax)
	return r.wait
}

// Succeeded starts the backoff over.
func (r *Retry) Succeeded() { r.wait = 0 }

// Sleep waits d, or until ctx is done; it reports whether ctx is still
// live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
