// Package consulpub publishes every topology's peers into Consul's catalog
// as external nodes, so that Consul DNS, consul-template, Prometheus
// consul_sd or any other catalog consumer finds them.
//
// Each sync reads what Consul holds for one service and this owner (one
// request), plans the difference as a pure function, and writes only that:
// a poll that changes nothing writes nothing, and a restart adopts the
// entries it finds. Entries without this owner's mark are never touched.
// A sync of a set that is unchanged since a sync that found nothing to do
// first asks Consul, with a query filtered down to one entry, whether
// anything of the service changed since (see steadyState), and reads and
// plans only when something did.
package consulpub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
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
	Fence Fence
	// MaxRefusals, when above 0, makes Run return ErrRefused once that
	// many syncs in a row were refused (an ACL token that may not write):
	// a leader that cannot write then gives up its lock (see Lead) so that
	// a replica whose token may write leads instead.
	MaxRefusals int
	// Timeout bounds each request to Consul; DefaultTimeout when 0. A
	// request that hangs fails the sync, which Run retries with backoff.
	Timeout time.Duration
	Logger  *slog.Logger
}

// ErrRefused is returned by Run when Consul refused MaxRefusals syncs in
// a row.
var ErrRefused = errors.New("consul refuses this replica's writes")

// DefaultTimeout is how long a request to Consul may take: a transaction
// of the largest size is written in well under a second, and Consul's own
// RPCs give up after 7 s by default. Without a deadline, one request that
// hung (a Consul server that vanished mid-request, a stalled proxy)
// stopped publishing for good, uncounted.
const DefaultTimeout = 10 * time.Second

// Fence is a leader's claim: its session holds the lock on Key.
type Fence struct {
	Key, Session string
}

// errFenced is returned for writes refused because the publisher's
// session no longer holds the leader lock.
var errFenced = errors.New("not written: this replica's session no longer holds the leader lock")

// Consul v1.20's limits on one transaction (agent/txn_endpoint.go): at
// most 128 operations (maxTxnOps there, not 64), in a body of at most
// limits.txn_max_req_len, 512 KiB by default (raft's suggested entry
// size). A registration with a check is 3 operations, so a transaction
// holds 42 of them with the fence op, 63 without checks. Batches also stay
// under half the default body size, so that registrations heavy with meta
// split before Consul turns them away; an agent configured tighter answers
// 413, and the batch is split then (see send).
const (
	maxTxnOps   = 128
	maxTxnBytes = 256 << 10
)

// Publisher is a bridge.Publisher for Consul's catalog. Publish records the
// set; Run writes it, and retries with backoff while Consul fails.
type Publisher struct {
	health *api.Health
	raw    *api.Raw
	kv     *api.KV
	fence  Fence
	// maxRefusals is Options.MaxRefusals.
	maxRefusals int
	owner       string
	tags        []string
	timeout     time.Duration
	log         *slog.Logger
	wake        chan struct{}

	mu      sync.Mutex
	desired map[string]bridge.Set // by topology
	// names are the node names of each topology's desired set, for
	// finding collisions (see Collisions).
	names map[string][]peerNode
	dirty map[string]bool
	errs  map[string]error
	// clashes are the collisions of the last sync, by node, so that each
	// is logged once when it appears.
	clashes map[clash]Collision
	lastErr string // of the last sync, "" when it succeeded

	syncMu sync.Mutex // one sync at a time
	// steady is, by topology, what the last sync that found nothing to
	// do read; guarded by syncMu.
	steady map[string]*steadyState

	creates, updates, deletes, failures atomic.Int64
	denied                              atomic.Int64 // failures for want of an ACL permission
	lastSync                            atomic.Int64 // unix nanoseconds
	collisions                          atomic.Int64 // entries skipped now
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
		health:      opts.Client.Health(),
		raw:         opts.Client.Raw(),
		kv:          opts.Client.KV(),
		fence:       opts.Fence,
		maxRefusals: opts.MaxRefusals,
		owner:       opts.Owner,
		tags:        slices.Compact(tags),
		timeout:     cmp.Or(opts.Timeout, DefaultTimeout),
		log:         log,
		wake:        make(chan struct{}, 1),
		desired:     map[string]bridge.Set{},
		names:       map[string][]peerNode{},
		dirty:       map[string]bool{},
		errs:        map[string]error{},
		clashes:     map[clash]Collision{},
		steady:      map[string]*steadyState{},
	}, nil
}

// Publish records set as what Consul should hold for its topology and asks
// Run to sync it. It returns the outcome of that topology's last sync, so
// that the loop reports a Consul in trouble.
func (p *Publisher) Publish(_ context.Context, set bridge.Set) error {
	p.mu.Lock()
	if old, ok := p.desired[set.Service.Topology]; !ok || !old.Equal(set) {
		p.names[set.Service.Topology] = nodeNames(p.owner, set)
	}
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
	refusals := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-retry.C:
		}
		if err := p.Sync(ctx); err != nil && ctx.Err() == nil {
			if refusals++; !errors.Is(err, ErrPermission) {
				refusals = 0
			}
			if p.maxRefusals > 0 && refusals >= p.maxRefusals {
				return fmt.Errorf("%w: %d syncs in a row: %w", ErrRefused, refusals, err)
			}
			wait := backoff.Failed()
			level := slog.LevelWarn
			if errors.Is(err, ErrPermission) {
				level = slog.LevelError // an operator must act
			}
			p.log.Log(ctx, level, "consul sync failed, retrying", "error", err, "retry_in", wait)
			retry.Reset(wait)
			continue
		}
		backoff.Succeeded()
		refusals = 0
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
	clashes := collisions(p.names)
	p.mu.Unlock()
	p.noteCollisions(clashes)

	var errs []error
	for _, t := range slices.Sorted(maps.Keys(due)) {
		err := scrubbed(p.syncSet(ctx, due[t], clashes)) // no password of CONSUL_HTTP_ADDR in a log line or /status
		p.mu.Lock()
		p.errs[t] = err
		// A set published while this one synced is due again.
		if err == nil && p.desired[t].Equal(due[t]) {
			delete(p.dirty, t)
		}
		p.mu.Unlock()
		if err != nil {
			p.failures.Add(1)
			if permissionDenied(err) {
				p.denied.Add(1)
				err = fmt.Errorf("%w (grant it to the token: deploy/consul/policy.hcl): %w", ErrPermission, err)
			}
			errs = append(errs, fmt.Errorf("topology %s: %w", t, err))
		}
	}
	err := errors.Join(errs...)
	p.mu.Lock()
	p.lastErr = ""
	if err != nil {
		p.lastErr = err.Error()
	}
	p.mu.Unlock()
	if err == nil {
		p.lastSync.Store(time.Now().UnixNano())
	}
	return err
}

// noteCollisions logs each collision when it first appears, and keeps
// their number for Stats.
func (p *Publisher) noteCollisions(clashes map[clash]Collision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range clashes {
		if p.clashes[k] != c {
			p.log.Error("consul node name collision: entry skipped", "node", c.Node, "topology", c.Other, "peer", c.OtherPeer, "error", c)
		}
	}
	p.clashes = clashes
	p.collisions.Store(int64(len(clashes)))
}

// call returns ctx with the deadline of one request to Consul.
func (p *Publisher) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.timeout)
}

// syncSet reads what Consul holds for the set's service and this owner,
// with one request, and writes the difference. Entries whose node another
// topology's peer takes (clashes) are left out. A fenced publisher also
// reads the stamp, and updates it in the transaction that completes the
// set.
func (p *Publisher) syncSet(ctx context.Context, set bridge.Set, clashes map[clash]Collision) error {
	topology := set.Service.Topology
	var left []string // nodes left out for collisions
	for k := range clashes {
		if k.topology == topology {
			left = append(left, k.node)
		}
	}
	slices.Sort(left)
	leftOut := strings.Join(left, "\n")
	if p.unchanged(ctx, set, leftOut) {
		return nil
	}
	// Whatever happens from here, the entries read now are all this sync
	// knows: the index of an earlier read no longer vouches for them.
	delete(p.steady, topology)

	have, index, err := p.read(ctx, set.Service.Name)
	if err != nil {
		return err
	}
	want := Desired(p.owner, p.tags, set)
	skipped := 0
	if len(clashes) > 0 {
		for node := range want {
			if _, ok := clashes[clash{node, topology}]; ok {
				delete(want, node)
				skipped++
			}
		}
	}
	changes := plan(p.owner, want, have)
	var stamp *api.KVTxnOp
	var old Stamp
	var stampIndex uint64
	var digest string
	if p.fence.Key != "" {
		rctx, cancel := p.call(ctx)
		old, _, stampIndex, err = readStamp(p.kv, StampKey(p.fence.Key), (&api.QueryOptions{}).WithContext(rctx))
		cancel()
		if err != nil {
			return err
		}
		digest = setDigest(setFromEntries(p.owner, set.Service, asEntries(want)))
		stamp = p.stampOp(old, stampIndex, topology, digest)
	}
	if changes.Writes() == 0 && stamp == nil {
		// Consul holds exactly what is wanted, as of index. A sync that
		// wrote does not get here: its read is older than its writes,
		// and the next sync reads again (and finds nothing to do).
		if index != 0 {
			st := &steadyState{set: set, leftOut: leftOut, digest: digest, index: index}
			if len(have) > 0 && have[0].Node != nil && have[0].Service != nil {
				st.witness = *have[0].Node
				st.witnessService = have[0].Service.ModifyIndex
			}
			p.steady[topology] = st
		}
		return nil
	}
	failed, err := p.applyEach(ctx, changes, stamp)
	restamped := false
	if err == nil && len(failed) > 0 && p.fence.Key != "" {
		// Some entries were refused (a node of that name held by someone
		// else, an entry changed since it was read), and the stamp, which
		// must not describe them as written, was left out (or already
		// says what was wanted). Followers serve only what matches the
		// stamp, so a stamp that does not say what the catalog holds kept
		// every topology out of DNS on every replica: stamp what the
		// catalog holds now instead, and the other entries are served.
		restamped, err = p.restamp(ctx, set.Service, old, stampIndex)
	}
	p.log.Info("consul catalog updated", "topology", topology, "service", set.Service.Name,
		"created", len(changes.Create), "updated", len(changes.Update), "deleted", len(changes.Delete),
		"refused", len(failed), "skipped_collisions", skipped, "stamped", stamp != nil && len(failed) == 0 || restamped,
		"error", errors.Join(append(failed, err)...))
	return errors.Join(append(failed, err)...)
}

// read returns this owner's entries of service, as Consul holds them, and
// the service's index in Consul (see steadyState).
func (p *Publisher) read(ctx context.Context, service string) ([]*api.ServiceEntry, uint64, error) {
	rctx, cancel := p.call(ctx)
	defer cancel()
	q := (&api.QueryOptions{NodeMeta: map[string]string{metaOwner: p.owner}}).WithContext(rctx)
	have, meta, err := p.health.Service(service, "", false, q)
	if err != nil {
		return nil, 0, fmt.Errorf("reading service %s from consul: %w", service, err)
	}
	return have, meta.LastIndex, nil
}

// FullReadEvery bounds how many syncs in a row may trust the service's
// index instead of reading its entries: every FullReadEvery-th sync of an
// unchanged set reads and plans in full even when the index stayed. Consul
// moves the index for every change of the service's entries but one: an
// instance re-registered by hand under another service name leaves this
// service without moving its index (the state store bumps the new name's
// index only). Such drift is repaired within FullReadEvery polls.
const FullReadEvery = 10

// noEntry is a filter expression that no entry matches. Consul applies
// filters after its state store lookup, so the answer is an empty list
// under the same X-Consul-Index as the full read.
const noEntry = `Node.Node == "" and Node.Node != ""`

// steadyState is what a sync that found nothing to do knows: the set and
// the collisions it planned for, and the service's index in Consul
// (X-Consul-Index of the health query it read). Consul's state store
// moves a service's index with every write that changes what the health
// query returns for it (agent/consul/state: a service registered, changed
// or deleted; a node registered, changed, meta included, or deleted,
// which moves the index of every service on it; a check of the service
// or of its node registered, changed or deleted). The same index thus
// means the same entries, and the sync is done without reading them.
//
// An index is only comparable within one Consul cluster's history: a
// Consul wiped and started again (a dev agent restarted) counts from 1
// anew, and may reach the same number with other entries. So the query
// also asks for one entry of the read, the witness, which must come back
// with the indexes it had; in another cluster it is missing or was
// written at another index.
type steadyState struct {
	set     bridge.Set
	leftOut string // the nodes left out for collisions, sorted
	digest  string // of the entries as followers rebuild them, when fenced
	index   uint64
	// witness is the node of one entry of the read (none when the read
	// found no entry), witnessService the ModifyIndex of its service.
	witness        api.Node
	witnessService uint64
	probes         int // syncs done on the index since the read
}

// unchanged reports whether Consul holds what the last sync of set found,
// so that syncing it again would write nothing: the same set and
// collisions, and the service's index where that sync read it. A fenced
// publisher also checks that the stamp still says what the entries hold.
// Any doubt (an error, an index moved, FullReadEvery reached) says no, and
// the sync reads in full.
func (p *Publisher) unchanged(ctx context.Context, set bridge.Set, leftOut string) bool {
	st := p.steady[set.Service.Topology]
	if st == nil || st.probes+1 >= FullReadEvery || st.leftOut != leftOut || !st.set.Equal(set) {
		return false
	}
	filter, want := noEntry, 0
	if st.witness.Node != "" {
		filter, want = "Node.Node == "+strconv.Quote(st.witness.Node), 1
	}
	rctx, cancel := p.call(ctx)
	defer cancel()
	q := (&api.QueryOptions{NodeMeta: map[string]string{metaOwner: p.owner}, Filter: filter}).WithContext(rctx)
	matched, meta, err := p.health.Service(set.Service.Name, "", false, q)
	if err != nil || meta.LastIndex != st.index || len(matched) != want {
		// Another number of entries than asked for: the witness is gone,
		// or a Consul ignored the filter (and its index is not trusted to
		// mean the same either).
		return false
	}
	if want == 1 {
		m := matched[0]
		if m.Node == nil || m.Service == nil || m.Node.Node != st.witness.Node || m.Node.CreateIndex != st.witness.CreateIndex ||
			m.Node.ModifyIndex != st.witness.ModifyIndex || m.Service.ModifyIndex != st.witnessService {
			return false
		}
	}
	if p.fence.Key != "" {
		old, _, stampIndex, err := readStamp(p.kv, StampKey(p.fence.Key), (&api.QueryOptions{}).WithContext(rctx))
		if err != nil || p.stampOp(old, stampIndex, set.Service.Topology, st.digest) != nil {
			return false
		}
	}
	st.probes++
	return true
}

// stampOp is the write that sets topology's digest in the stamp old,
// read at index, or nil when it says so already.
func (p *Publisher) stampOp(old Stamp, index uint64, topology, digest string) *api.KVTxnOp {
	if old.Sets[topology] == digest && old.Serial != 0 {
		return nil
	}
	value, _ := json.Marshal(old.next(topology, digest, time.Now())) // plain structs: cannot fail
	return &api.KVTxnOp{Verb: api.KVCAS, Key: StampKey(p.fence.Key), Value: value, Index: index}
}

// restamp reads svc's entries back and writes the digest of what they
// hold into the stamp, alone: what followers then serve. It reports
// whether it wrote.
func (p *Publisher) restamp(ctx context.Context, svc bridge.Service, old Stamp, index uint64) (bool, error) {
	have, _, err := p.read(ctx, svc.Name)
	if err != nil {
		return false, err
	}
	op := p.stampOp(old, index, svc.Topology, setDigest(setFromEntries(p.owner, svc, have)))
	if op == nil {
		return false, nil
	}
	w := write{what: "the stamp", ops: api.TxnOps{{KV: op}}, stamp: true, done: func() {}}
	var failed []error
	if err := p.send(ctx, []write{w}, &failed); err != nil {
		return false, err
	}
	return len(failed) == 0, errors.Join(failed...)
}

// write is one entry's operations, which always travel in one
// transaction.
type write struct {
	what  string // "node NAME" or "the stamp", for errors
	ops   api.TxnOps
	size  int  // bytes of the ops as JSON
	stamp bool // the stamp, which must only describe entries all written
	done  func()
}

// apply writes the changes in as few transactions as Consul's limits
// allow, a registration's operations never split; the stamp goes last.
// Every write is check-and-set on the indexes syncSet read, so nothing
// is read per entry and nothing changed by someone else since the read is
// overwritten (see registerOps). With a fence, each transaction starts
// with the check that the lock is still held. Entries Consul refuses are
// reported and the rest is written (see send).
func (p *Publisher) apply(ctx context.Context, c changeSet, stamp *api.KVTxnOp) error {
	failed, err := p.applyEach(ctx, c, stamp)
	return errors.Join(append(failed, err)...)
}

// applyEach is apply, with the entries refused in failed and what ended
// it early in err.
func (p *Publisher) applyEach(ctx context.Context, c changeSet, stamp *api.KVTxnOp) (failed []error, err error) {
	var writes []write
	add := func(what string, ops api.TxnOps, done func()) {
		b, _ := json.Marshal(ops) // plain structs: cannot fail
		writes = append(writes, write{what: what, ops: ops, size: len(b), done: done})
	}
	for _, reg := range c.Create {
		add("node "+reg.Node, registerOps(reg, nil), func() { p.creates.Add(1) })
	}
	for _, reg := range c.Update {
		add("node "+reg.Node, registerOps(reg, c.Read[reg.Node]), func() { p.updates.Add(1) })
	}
	for _, dc := range c.DropChecks {
		check := api.HealthCheck{Node: dc.Node, CheckID: dc.CheckID}
		if e := c.Read[dc.Node]; e != nil {
			check.ModifyIndex = checkIndex(e.Checks, dc.CheckID)
		}
		add("node "+dc.Node, api.TxnOps{{Check: &api.CheckTxnOp{Verb: api.CheckDeleteCAS, Check: check}}}, func() {})
	}
	for _, node := range c.Delete {
		n := api.Node{Node: node}
		if e := c.Read[node]; e != nil {
			n.ModifyIndex = e.Node.ModifyIndex
		}
		add("node "+node, api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeDeleteCAS, Node: n}}}, func() { p.deletes.Add(1) })
	}
	if stamp != nil {
		add("the stamp", api.TxnOps{{KV: stamp}}, func() {})
		writes[len(writes)-1].stamp = true
	}

	for _, batch := range p.batches(writes) {
		if err := p.send(ctx, batch, &failed); err != nil {
			return failed, err
		}
	}
	return failed, nil
}

// batches packs writes in order into transactions within maxTxnOps and
// maxTxnBytes, the fence op included.
func (p *Publisher) batches(ws []write) [][]write {
	fixed := 0
	if p.fence.Key != "" {
		fixed = 1
	}
	var out [][]write
	for len(ws) > 0 {
		n, ops, size := 0, fixed, 0
		for n < len(ws) && (n == 0 || ops+len(ws[n].ops) <= maxTxnOps && size+ws[n].size <= maxTxnBytes) {
			ops += len(ws[n].ops)
			size += ws[n].size
			n++
		}
		out = append(out, ws[:n])
		ws = ws[n:]
	}
	return out
}

// send writes ws in one transaction. Consul applies a transaction whole
// or not at all, so one refused for its content (a check-and-set that
// failed: a name taken by another owner, an entry changed since it was
// read; an entry Consul rejects) would hold back every entry in it.
// Instead it is split in two and each half sent on its own, down to
// single entries: an entry refused alone is reported in *failed (its
// error names the node), and the rest is written. Consul's errors name
// the operations that failed; when they name every entry of the batch, no
// half can succeed, and all are reported at once, unsplit (an ACL token
// that may not write costs one request per batch, not two per entry).
//
// A failed fence and a Consul that does not answer, or answers anything
// but a refusal of the content (5xx: no leader, a timeout; 403: a token
// it does not know; 429), end the apply with that error instead: every
// half would meet the same failure, and Run retries with backoff.
func (p *Publisher) send(ctx context.Context, ws []write, failed *[]error) error {
	if len(*failed) > 0 && len(ws) > 0 && ws[len(ws)-1].stamp {
		ws = ws[:len(ws)-1] // the stamp must not say that failed entries are written
	}
	if len(ws) == 0 {
		return nil
	}
	var ops api.TxnOps
	var opWrite []int // the write of each op; -1 for the fence
	if p.fence.Key != "" {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: p.fence.Key, Session: p.fence.Session}})
		opWrite = append(opWrite, -1)
	}
	for i, w := range ws {
		ops = append(ops, w.ops...)
		for range w.ops {
			opWrite = append(opWrite, i)
		}
	}
	err := p.commit(ctx, ops)
	if err == nil {
		for _, w := range ws {
			w.done()
		}
		return nil
	}
	var refused *txnRefused
	if !errors.As(err, &refused) {
		return err
	}
	reasons := map[int][]string{} // by write
	for _, e := range refused.errors {
		if e.OpIndex < 0 || e.OpIndex >= len(opWrite) {
			continue
		}
		if opWrite[e.OpIndex] < 0 {
			return fmt.Errorf("%w (%s)", errFenced, e.What)
		}
		reasons[opWrite[e.OpIndex]] = append(reasons[opWrite[e.OpIndex]], e.What)
	}
	if len(ws) > 1 && len(reasons) < len(ws) {
		mid := len(ws) / 2
		if err := p.send(ctx, ws[:mid], failed); err != nil {
			return err
		}
		return p.send(ctx, ws[mid:], failed)
	}
	for i, w := range ws {
		why := strings.Join(reasons[i], "; ")
		if why == "" {
			why = refused.Error()
		}
		if strings.Contains(why, "index is stale") {
			why += " (created, taken or changed by someone else since it was read: not touching it)"
		}
		*failed = append(*failed, fmt.Errorf("%s not written: %s", w.what, why))
	}
	return nil
}

// ErrPermission marks a sync that Consul refused because the token lacks
// a permission: nothing changes until an operator grants it (which the
// next retry picks up, no restart needed).
var ErrPermission = errors.New("the Consul token lacks a permission")

// permissionDenied reports whether Consul refused err's request for the
// token: a 403, a transaction whose operations failed with Consul's
// "Permission denied" (which names the missing permission, and the
// token's accessor id, never its secret), or a token Consul does not know
// ("ACL not found"). Such a refusal lasts until an operator acts, unlike
// a failure that may pass.
func permissionDenied(err error) bool {
	var status api.StatusError
	if errors.As(err, &status) && status.Code == http.StatusForbidden {
		return true
	}
	text := strings.ToLower(err.Error())
	return strings.Contains(text, "permission denied") || strings.Contains(text, "acl not found")
}

// txnRefused is a transaction Consul refused for what it holds: rolled
// back with the failed operations named (409), or turned away whole (400,
// 413).
type txnRefused struct {
	errors api.TxnErrors
	status string
}

func (e *txnRefused) Error() string {
	if e.status != "" {
		return "consul refused the transaction: " + e.status
	}
	var reasons []string
	for _, te := range e.errors {
		reasons = append(reasons, te.What)
	}
	return "consul transaction rolled back: " + strings.Join(reasons, "; ")
}

// commit sends one transaction: nil once applied, a *txnRefused when
// Consul refused its content, else what went wrong on the way. It goes
// through Raw rather than Txn(), which folds every status but 200 and 409
// into one untyped error, while what to do next depends on the status.
func (p *Publisher) commit(ctx context.Context, ops api.TxnOps) error {
	wctx, cancel := p.call(ctx)
	defer cancel()
	_, err := p.raw.Write("/v1/txn", ops, nil, (&api.WriteOptions{}).WithContext(wctx))
	if err == nil {
		return nil
	}
	var status api.StatusError
	if errors.As(err, &status) {
		switch status.Code {
		case http.StatusConflict:
			var resp api.TxnResponse
			if json.Unmarshal([]byte(status.Body), &resp) == nil && len(resp.Errors) > 0 {
				return &txnRefused{errors: resp.Errors}
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return &txnRefused{status: fmt.Sprintf("%d %s", status.Code, status.Body)}
		}
	}
	return fmt.Errorf("consul transaction: %w", err)
}

// registerOps is a registration as check-and-set operations: the node,
// its service, the service's check, in that order, each on its
// ModifyIndex as read, or 0 where nothing was read, which Consul takes as
// "only if it does not exist" (state store: ensureNodeCASTxn and
// siblings). The node's op is the ownership check, in the transaction
// itself: a create fails if the name is taken (by another owner, by hand,
// or since the read), an update if the node changed since it was read (it
// may have lost its owner mark).
func registerOps(reg *api.CatalogRegistration, read *api.ServiceEntry) api.TxnOps {
	node := api.Node{Node: reg.Node, Address: reg.Address, TaggedAddresses: reg.TaggedAddresses, Meta: reg.NodeMeta}
	svc := *reg.Service
	svc.ModifyIndex = 0
	var checks api.HealthChecks
	if read != nil {
		node.ModifyIndex = read.Node.ModifyIndex
		if read.Service != nil && read.Service.ID == svc.ID {
			svc.ModifyIndex = read.Service.ModifyIndex
		}
		checks = read.Checks
	}
	ops := api.TxnOps{
		{Node: &api.NodeTxnOp{Verb: api.NodeCAS, Node: node}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceCAS, Node: reg.Node, Service: svc}},
	}
	for _, c := range reg.Checks {
		check := *c
		check.ModifyIndex = checkIndex(checks, c.CheckID)
		ops = append(ops, &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckCAS, Check: check}})
	}
	return ops
}

// checkIndex is the ModifyIndex of the check id among checks, 0 if absent.
func checkIndex(checks api.HealthChecks, id string) uint64 {
	for _, c := range checks {
		if c.CheckID == id {
			return c.ModifyIndex
		}
	}
	return 0
}

// Stats are the publisher's counters, for metrics.
type Stats struct {
	Creates, Updates, Deletes, Failures int64
	// Denied counts the failures (among Failures) for want of an ACL
	// permission.
	Denied int64
	// Collisions is the number of entries skipped now because another
	// topology's peer has their node name (see Collisions).
	Collisions int64
	LastSync   time.Time
	// LastError is why the last sync failed; "" when it succeeded.
	LastError string
}

// Stats returns the counters so far.
func (p *Publisher) Stats() Stats {
	s := Stats{Creates: p.creates.Load(), Updates: p.updates.Load(), Deletes: p.deletes.Load(), Failures: p.failures.Load(),
		Denied: p.denied.Load(), Collisions: p.collisions.Load()}
	p.mu.Lock()
	s.LastError = p.lastErr
	p.mu.Unlock()
	if ns := p.lastSync.Load(); ns != 0 {
		s.LastSync = time.Unix(0, ns)
	}
	return s
}
