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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
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
	Tags []string
	// Fence, when set, guards every write: it lands only while Fence's
	// session holds the leader lock (see Lead), checked by Consul in the
	// same transaction, so that a deposed leader's late writes fail. A
	// fenced publisher also keeps the Stamp.
	Fence  Fence
	Logger *slog.Logger
}

// Fence is a leader's claim: its session holds the lock on Key.
type Fence struct {
	Key, Session string
}

// ErrFenced is returned for writes refused because the publisher's
// session no longer holds the leader lock.
var ErrFenced = errors.New("not written: this replica's session no longer holds the leader lock")

// maxTxnOps is how many operations Consul accepts in one transaction.
const maxTxnOps = 64

// Publisher is a bridge.Publisher for Consul's catalog. Publish records the
// set; Run writes it, and retries with backoff while Consul fails.
type Publisher struct {
	catalog *api.Catalog
	health  *api.Health
	txn     *api.Txn
	kv      *api.KV
	fence   Fence
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
		txn:     opts.Client.Txn(),
		kv:      opts.Client.KV(),
		fence:   opts.Fence,
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
// with one request, and writes the difference. A fenced publisher also
// reads the stamp, and updates it in the transaction that completes the
// set.
func (p *Publisher) syncSet(ctx context.Context, set bridge.Set) error {
	q := (&api.QueryOptions{NodeMeta: map[string]string{MetaOwner: p.owner}}).WithContext(ctx)
	have, _, err := p.health.Service(set.Service.Name, "", false, q)
	if err != nil {
		return fmt.Errorf("reading service %s from consul: %w", set.Service.Name, err)
	}
	want := Desired(p.owner, p.tags, set)
	changes := Plan(p.owner, want, have)
	var stamp *api.KVTxnOp
	if p.fence.Key != "" {
		key := StampKey(p.fence.Key)
		old, _, index, err := readStamp(p.kv, key, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		digest := Digest(SetFromEntries(p.owner, set.Service, Entries(want)))
		if old.Sets[set.Service.Topology] != digest || old.Serial == 0 {
			value, err := json.Marshal(old.next(set.Service.Topology, digest, time.Now()))
			if err != nil {
				return err
			}
			stamp = &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: value, Index: index}
		}
	}
	if changes.Writes() == 0 && stamp == nil {
		return nil
	}
	err = p.apply(ctx, changes, stamp)
	p.log.Info("consul catalog updated", "topology", set.Service.Topology, "service", set.Service.Name,
		"created", len(changes.Create), "updated", len(changes.Update), "deleted", len(changes.Delete),
		"stamped", stamp != nil, "error", err)
	return err
}

// apply writes the changes in transactions of up to maxTxnOps operations,
// a registration's operations never split; the stamp goes last, so that
// it only ever describes entries that are all written. With a fence, each
// transaction starts with the check that the lock is still held.
func (p *Publisher) apply(ctx context.Context, c Changes, stamp *api.KVTxnOp) error {
	type write struct {
		ops  api.TxnOps
		done func() // counts it, once written
	}
	var writes []write
	var errs []error
	for _, reg := range c.Create {
		if err := p.claim(ctx, reg.Node); err != nil {
			errs = append(errs, err)
			continue
		}
		writes = append(writes, write{registerOps(reg), func() { p.creates.Add(1) }})
	}
	for _, reg := range c.Update {
		writes = append(writes, write{registerOps(reg), func() { p.updates.Add(1) }})
	}
	for _, dc := range c.DropChecks {
		writes = append(writes, write{api.TxnOps{{Check: &api.CheckTxnOp{Verb: api.CheckDelete,
			Check: api.HealthCheck{Node: dc.Node, CheckID: dc.CheckID}}}}, func() {}})
	}
	for _, node := range c.Delete {
		writes = append(writes, write{api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeDelete,
			Node: api.Node{Node: node}}}}, func() { p.deletes.Add(1) }})
	}
	if stamp != nil {
		if len(errs) > 0 {
			// Some entries are not written: the stamp must not say they are.
			return errors.Join(errs...)
		}
		writes = append(writes, write{api.TxnOps{{KV: stamp}}, func() {}})
	}

	w := (&api.QueryOptions{}).WithContext(ctx)
	for len(writes) > 0 {
		var ops api.TxnOps
		if p.fence.Key != "" {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: p.fence.Key, Session: p.fence.Session}})
		}
		n := 0
		for n < len(writes) && (n == 0 || len(ops)+len(writes[n].ops) <= maxTxnOps) {
			ops = append(ops, writes[n].ops...)
			n++
		}
		batch := writes[:n]
		writes = writes[n:]
		ok, resp, _, err := p.txn.Txn(ops, w)
		if err != nil {
			errs = append(errs, fmt.Errorf("consul transaction: %w", err))
			break
		}
		if !ok {
			errs = append(errs, p.txnError(ops, resp))
			break
		}
		for _, w := range batch {
			w.done()
		}
	}
	return errors.Join(errs...)
}

// registerOps is a catalog registration as transaction operations: the
// node, its service, the service's checks, in that order.
func registerOps(reg *api.CatalogRegistration) api.TxnOps {
	ops := api.TxnOps{
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{
			Node: reg.Node, Address: reg.Address, TaggedAddresses: reg.TaggedAddresses, Meta: reg.NodeMeta}}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: reg.Node, Service: *reg.Service}},
	}
	for _, c := range reg.Checks {
		ops = append(ops, &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: *c}})
	}
	return ops
}

// txnError explains a rolled-back transaction: ErrFenced when the lock
// check failed, else Consul's reasons.
func (p *Publisher) txnError(ops api.TxnOps, resp *api.TxnResponse) error {
	var reasons []string
	for _, e := range resp.Errors {
		if e.OpIndex >= 0 && e.OpIndex < len(ops) && ops[e.OpIndex].KV != nil && ops[e.OpIndex].KV.Verb == api.KVCheckSession {
			return fmt.Errorf("%w (%s)", ErrFenced, e.What)
		}
		reasons = append(reasons, e.What)
	}
	return fmt.Errorf("consul transaction rolled back: %s", strings.Join(reasons, "; "))
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
	if n != nil && n.Node != nil && !ownedNode(n.Node, p.owner) {
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
