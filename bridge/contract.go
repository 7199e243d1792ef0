package bridge

import (
	"context"
	"errors"
	"time"
)

// Provider returns the full set of peers of one topology. An error means
// "no news": the loop keeps what it published last.
type Provider interface {
	Peers(ctx context.Context) ([]Peer, error)
}

// Publisher makes a topology's set visible (DNS records, Consul catalog).
// It is called after every poll, also when nothing changed, so that a
// publisher can repair drift; a publisher whose view did not change must
// do no work. Publish must be safe to call from several loops at once, one
// per topology.
type Publisher interface {
	Publish(ctx context.Context, set Set) error
}

// Notifier is implemented by providers that learn of changes between polls
// (the Rancher metadata long-poll). Notify runs until ctx is done and calls
// wake whenever the next poll should happen now rather than at the next
// interval. wake never blocks.
type Notifier interface {
	Notify(ctx context.Context, wake func())
}

// Checker sets the Health of every peer of a freshly polled set: a health
// check configured for the topology, whatever its provider. Checks of
// many peers run concurrently, with a bound.
type Checker interface {
	Check(ctx context.Context, peers []Peer)
}

// ErrCredentials marks provider errors that mean the platform rejected
// the credentials: nothing changes until an operator acts, so the loop
// logs them at error level, and metrics count them apart.
var ErrCredentials = errors.New("the API rejected the credentials")

// ErrTransient marks provider errors that are expected to go away on their
// own (timeouts, 5xx, rate limits). The loop logs them at warning level;
// other errors, such as rejected credentials, at error level.
var ErrTransient = errors.New("transient")

// RetryAfterError is implemented by errors that carry the server's own word
// on when to ask again (an HTTP retry-after or rate-limit reset). The loop
// never polls sooner than that.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// MaxRetryAfter caps the wait a server may ask for: a Retry-After in the
// year 9999, or of ten years in seconds, is a broken or hostile server,
// and obeying it would stop discovery for good. After an hour the loop
// asks again, and a wake then polls.
const MaxRetryAfter = time.Hour
