// Package consulpub publishes every topology's peers into Consul's catalog
// as external nodes, so that Consul DNS, consul-template, Prometheus
// consul_sd or any other catalog consumer finds them.
//
// Each sync reads what Consul holds for one service and this owner (one
// request), plans the difference as a pure function, and writes only that:
// a poll that changes nothing writes nothing, and a restart adopts the
// entries it finds. Entries without this owner's mark are never touched.
package consulpub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// Options configure a publisher.
type Options struct {
	// Client talks to Consul; api.DefaultConfig reads CONSUL_HTTP_ADDR,
	// CONSUL_HTTP_TOKEN, CONSUL_CACERT and the rest.
	Client *api.Client
	// Owner is stamped on every node; only such nodes are changed.
	Owner string
	// Tags are added to every registered service.
	Tags   []string
	Logger *slog.Logger
}

// Publisher is a bridge.Publisher for Consul's catalog. Publish records the
// set; Run writes it, and retries with backoff while Consul fails.
type Publisher struct {
	catalog *api.Catalog
	health  *api.Health
	owner   string
	tags    []string
	log     *slog.Logger
	wake    chan struct{}

	mu      sync.Mutex
	desired map[string]bridge.Set // by topology
	dirty   map[string]bool
	errs    map[string]error

	syncMu sync.Mutex // one sync at a time

	creates, updates, deletes, failures atomic.Int64
	lastSync                            atomic.Int64 // unix nanoseconds
}

// New returns a publisher.
func New(opts Options) (*Publisher, error) {
	if opts.Client == nil {
		return nil, errors.New("consulpub: no Consul client")
	}
	if opts.Owner == "" {
		return nil, errors.New("consulpub: no owner")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tags := slices.Clone(opts.Tags)
	slices.Sort(tags)
	return &Publisher{
		catalog: opts.Client.Catalog(),
		health:  opts.Client.Health(),
		owner:   opts.Owner,
		tags:    slices.Compact(tags),
		log:     log,
		wake:    make(chan struct{}, 1),
		desired: map[string]bridge.Set{},
		dirty:   map[string]bool{},
		errs:    map[string]error{},
	}, nil
}

// Publish records set as what Consul should hold for its topology and asks
// Run to sync it. It returns the outcome of that topology's last sync, so
// that the loop reports a Consul in trouble.
func (p *Publisher) Publish(_ context.Context, set bridge.Set) error {
	p.mu.Lock()
	p.desired[set.Service.Topology] = set
	p.dirty[set.Service.Topology] = true
	err := p.errs[set.Service.Topology]
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return err
}

// Run syncs whenever a set is published, and retries failed syncs with
// backoff, until ctx is done. Nothing is deleted on the way out: entries
// stay in Consul across restarts.
func (p *Publisher) Run(ctx context.Context) error {
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	var backoff bridge.Retry
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-retry.C:
		}
		if err := p.Sync(ctx); err != nil && ctx.Err() == nil {
			wait := backoff.Failed()
			p.log.Warn("consul sync failed, retrying", "error", err, "retry_in", wait)
			retry.Reset(wait)
			continue
		}
		backoff.Succeeded()
	}
}

// Sync brings Consul in line with every topology published since the last
// successful sync. A topology that fails stays due.
func (p *Publisher) Sync(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.mu.Lock()
	due := make(map[string]bridge.Set)
	for t := range p.dirty {
		due[t] = p.desired[t]
	}
	p.mu.Unlock()

	var errs []error
	for _, t := range slices.Sorted(maps.Keys(due)) {
		err := scrubbed(p.syncSet(ctx, due[t])) // no password of CONSUL_HTTP_ADDR in a log line or /status
		p.mu.Lock()
		p.errs[t] = err
		// A set published while this one synced is due again.
		if err == nil && p.desired[t].Equal(due[t]) {
			delete(p.dirty, t)
		}
		p.mu.Unlock()
		if err != nil {
			p.failures.Add(1)
			errs = append(errs, fmt.Errorf("topology %s: %w", t, err))
		}
	}
	if len(errs) == 0 {
		p.lastSync.Store(time.Now().UnixNano())
	}
	return errors.Join(errs...)
}

// syncSet reads what Consul holds for the set's service and this owner,
// with one request, and writes the difference.
func (p *Publisher) syncSet(ctx context.Context, set bridge.Set) error {
	q := (&api.QueryOptions{NodeMeta: map[string]string{MetaOwner: p.owner}}).WithContext(ctx)
	have, _, err := p.health.Service(set.Service.Name, "", false, q)
	if err != nil {
		return fmt.Errorf("reading service %s from consul: %w", set.Service.Name, err)
	}
	changes := Plan(p.owner, Desired(p.owner, p.tags, set), have)
	if changes.Writes() == 0 {
		return nil
	}
	err = p.apply(ctx, changes)
	p.log.Info("consul catalog updated", "topology", set.Service.Topology, "service", set.Service.Name,
		"created", len(changes.Create), "updated", len(changes.Update), "deleted", len(changes.Delete))
	return err
}

// apply writes the changes, one request each, going on past failures so
// that one bad entry does not hold up the rest.
func (p *Publisher) apply(ctx context.Context, c Changes) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	var errs []error
	for _, reg := range c.Create {
		if err := p.claim(ctx, reg.Node); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := p.catalog.Register(reg, w); err != nil {
			errs = append(errs, fmt.Errorf("registering %s: %w", reg.Node, err))
			continue
		}
		p.creates.Add(1)
	}
	for _, reg := range c.Update {
		if _, err := p.catalog.Register(reg, w); err != nil {
			errs = append(errs, fmt.Errorf("updating %s: %w", reg.Node, err))
			continue
		}
		p.updates.Add(1)
	}
	for _, dc := range c.DropChecks {
		if _, err := p.catalog.Deregister(dc, w); err != nil {
			errs = append(errs, fmt.Errorf("removing check of %s: %w", dc.Node, err))
		}
	}
	for _, node := range c.Delete {
		if _, err := p.catalog.Deregister(&api.CatalogDeregistration{Node: node}, w); err != nil {
			errs = append(errs, fmt.Errorf("deregistering %s: %w", node, err))
			continue
		}
		p.deletes.Add(1)
	}
	return errors.Join(errs...)
}

// claim makes sure a node about to be created is not someone else's that
// happens to have the same name: a register would overwrite it. It reads
// only for nodes this owner does not hold yet, so steady state reads
// nothing more.
func (p *Publisher) claim(ctx context.Context, node string) error {
	n, _, err := p.catalog.Node(node, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("checking node %s: %w", node, err)
	}
	if n != nil && n.Node != nil && n.Node.Meta[MetaOwner] != p.owner {
		return fmt.Errorf("node %s exists without owner %q: not touching it", node, p.owner)
	}
	return nil
}

// Stats are the publisher's counters, for metrics.
type Stats struct {
	Creates, Updates, Deletes, Failures int64
	LastSync                            time.Time
}

// Stats returns the counters so far.
func (p *Publisher) Stats() Stats {
	s := Stats{Creates: p.creates.Load(), Updates: p.updates.Load(), Deletes: p.deletes.Load(), Failures: p.failures.Load()}
	if ns := p.lastSync.Load(); ns != 0 {
		s.LastSync = time.Unix(0, ns)
	}
	return s
}
