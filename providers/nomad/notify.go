package nomad

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// errEarly is a blocking query answered long before its wait with its
// index unchanged: an agent (or a proxy in front of it) that ignores
// index. Taken as a failure, so that it backs off instead of spinning.
var errEarly = platform.Transient(errors.New("a blocking query came back early with its index unchanged: is something between peerbridge and Nomad dropping index and wait?"))

// Notify holds a blocking query on the service (on the catalog of every
// namespace, for "*") and wakes the loop whenever Nomad's index moves, so
// that a registration is published moments after Nomad has it. The loop's
// interval still brings a full listing at least that often. A failed
// query, or one still unanswered 10 s after its wait, counts as a failure
// and backs off from 1 s to 30 s: no spin while Nomad is down.
func (p *Provider) Notify(ctx context.Context, wake func()) {
	var backoff bridge.Retry
	// known is the last index Nomad answered with; after a failure the
	// next query is a plain read (the index may have moved on, or back
	// after a restore), and a change while failing wakes the loop then.
	var known uint64
	blocking, failing := false, false
	for ctx.Err() == nil {
		index := uint64(0)
		if blocking {
			index = known
		}
		start := time.Now()
		next, err := p.block(ctx, index)
		if err == nil && blocking && next == known && time.Since(start) < p.opts.Wait/2 {
			err = errEarly
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.blockFailures.Add(1)
			blocking = false
			wait := backoff.Failed()
			// The first failure of a run is worth a warning; the poll
			// reports the rest of an outage itself.
			level := p.log.Debug
			if !failing {
				level = p.log.Warn
			}
			failing = true
			level("nomad blocking query failed; polling every interval meanwhile", "error", err, "retry_in", wait)
			if !bridge.Sleep(ctx, wait) {
				return
			}
			continue
		}
		if failing {
			p.log.Info("nomad blocking query answered again")
			failing = false
		}
		backoff.Succeeded()
		if known != 0 && next != known {
			p.wakeups.Add(1)
			wake()
		}
		// An index that went back is taken as it is: Nomad answers as
		// soon as its index passes the one given.
		known, blocking = next, true
	}
}

// block runs one query: a plain read when index is 0, else a blocking
// query that Nomad answers once its index passes index or the wait ends.
// It returns the index of the answer; an answer without one is an error,
// as every later query would return at once.
func (p *Provider) block(ctx context.Context, index uint64) (uint64, error) {
	timeout := lateness + p.opts.Wait
	if index == 0 {
		timeout = lateness
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var next uint64
	var err error
	if p.opts.Namespace == api.AllNamespacesNamespace {
		_, next, err = p.namespaces(qctx, index)
	} else {
		var meta *api.QueryMeta
		_, meta, err = p.client.Services().Get(p.opts.Service, p.query(qctx, p.opts.Namespace, index))
		if err != nil {
			err = p.fail("watching service "+p.opts.Service, err)
		} else {
			next = meta.LastIndex
		}
	}
	switch {
	case err != nil && ctx.Err() == nil && qctx.Err() != nil:
		return 0, platform.Transient(fmt.Errorf("abandoned a blocking query still unanswered %s after its wait of %s: %w", lateness, p.opts.Wait, err))
	case err != nil:
		return 0, err
	case next == 0:
		return 0, platform.Transient(errors.New("an answer without X-Nomad-Index"))
	}
	return next, nil
}
