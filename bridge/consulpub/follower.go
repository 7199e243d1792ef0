package consulpub

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// Zone is where followed sets go: the DNS server.
type Zone interface {
	// PublishSerial replaces the records of the sets' topologies at once
	// and serves them under serial.
	PublishSerial(ctx context.Context, serial uint32, sets ...bridge.Set) error
}

// FollowOptions configure Follow.
type FollowOptions struct {
	Client *api.Client
	Owner  string
	// StampKey is the key of the leader's Stamp (StampKey(lock key)).
	StampKey string
	Services []bridge.Service
	Zone     Zone
	// Ready, if set, is called once per topology, when it is first
	// published.
	Ready  func(topology string)
	Logger *slog.Logger
}

// Follow serves the leader's sets, as every replica does with HA (the
// leader included, so that all serve alike): one blocking query per
// topology on the owner's catalog entries, each answer turned back into
// the set the leader published, and one on the leader's stamp. Once every
// stamped topology's entries match the stamp, the sets go to the zone at
// once, under the stamp's serial: a replica never serves a half-written
// set, and replicas serving the same records serve the same serial. A
// topology the stamp does not name yet is left out rather than holding
// the others back. Errors keep
// the last sets and are retried with backoff. Follow returns when ctx is
// done.
func Follow(ctx context.Context, opts FollowOptions) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ready := opts.Ready
	if ready == nil {
		ready = func(string) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type update struct {
		set   bridge.Set
		stamp *Stamp
	}
	updates := make(chan update)
	send := func(u update) {
		select {
		case updates <- u:
		case <-ctx.Done():
		}
	}
	health := opts.Client.Health()
	for _, svc := range opts.Services {
		go watch(ctx, "catalog", log.With("topology", svc.Topology), func(q *api.QueryOptions) (*api.QueryMeta, error) {
			// No node-meta filter here: for blocking queries Consul 1.20's
			// streaming backend turns it into a filter expression without
			// quoting the key, and a key with a hyphen fails to parse (HTTP
			// 500). setFromEntries keeps the owner's entries instead.
			entries, meta, err := health.Service(svc.Name, "", false, q)
			if err == nil {
				send(update{set: setFromEntries(opts.Owner, svc, entries)})
			}
			return meta, err
		})
	}
	kv := opts.Client.KV()
	go watch(ctx, "stamp", log, func(q *api.QueryOptions) (*api.QueryMeta, error) {
		st, meta, _, err := readStamp(kv, opts.StampKey, q)
		if err == nil {
			send(update{stamp: &st})
		}
		return meta, err
	})

	sets := map[string]bridge.Set{}
	var stamp *Stamp
	published := map[string]bool{} // topologies served, for ready
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-updates:
			if u.stamp != nil {
				// Reads are stale (see watch): a lagging server may answer
				// with an older stamp, which must not win over a newer one.
				if stamp == nil || stamp.Serial == 0 || bridge.CompareSerial(u.stamp.Serial, stamp.Serial) > 0 {
					stamp = u.stamp
				}
			} else {
				sets[u.set.Service.Topology] = u.set
			}
		}
		if stamp == nil || stamp.Serial == 0 {
			continue // no leader has written yet
		}
		all := make([]bridge.Set, 0, len(opts.Services))
		for _, svc := range opts.Services {
			digest, stamped := stamp.Sets[svc.Topology]
			if !stamped {
				// No leader has written this topology (new, or its writes
				// keep failing): every replica sees the same stamp, so all
				// serve the others alike, and none this one.
				continue
			}
			set, ok := sets[svc.Topology]
			if !ok || setDigest(set) != digest {
				all = nil
				break
			}
			all = append(all, set)
		}
		if all == nil {
			continue // mid-write, or this replica has not read it all yet
		}
		if err := opts.Zone.PublishSerial(ctx, stamp.Serial, all...); err != nil {
			log.Warn("publishing the leader's peer sets failed", "error", err)
			continue
		}
		for _, set := range all {
			if !published[set.Service.Topology] {
				published[set.Service.Topology] = true
				ready(set.Service.Topology)
			}
		}
	}
}

// watch runs a blocking query until ctx is done, with the index of its last
// answer, backing off on errors.
func watch(ctx context.Context, what string, log *slog.Logger, query func(*api.QueryOptions) (*api.QueryMeta, error)) {
	var index uint64
	var backoff bridge.Retry
	for ctx.Err() == nil {
		// Any server may answer: a blocking query forwarded to a Raft leader
		// that has just been cut off would hang until Consul's RPC timeout.
		// The stamp makes stale answers harmless: entries are served only
		// when they match it, and it only moves forward.
		// A deadline too, for a server that vanishes mid-query (Consul adds up
		// to a sixteenth of the wait time as jitter).
		const wait = time.Minute
		qctx, cancel := context.WithTimeout(ctx, wait+wait/16+5*time.Second)
		meta, err := query((&api.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true}).WithContext(qctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff.Failed()
			log.Warn("watching consul failed, keeping the last peer sets", "watch", what, "error", err, "retry_in", wait)
			if !bridge.Sleep(ctx, wait) {
				return
			}
			continue
		}
		backoff.Succeeded()
		// Consul's rule for blocking queries: an index that goes backwards
		// (a restored or restarted server) starts the watch over.
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
	}
}

// Owned reads the set that owner's bridge published to Consul for svc:
// its entries of the service, rebuilt as the follower rebuilds them
// (normalized). A start with nothing saved serves it until its first
// complete poll.
func Owned(ctx context.Context, client *api.Client, owner string, svc bridge.Service) (bridge.Set, error) {
	entries, _, err := client.Health().Service(svc.Name, "", false, (&api.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		return bridge.Set{}, fmt.Errorf("reading service %s from consul: %w", svc.Name, err)
	}
	return setFromEntries(owner, svc, entries).Normalize(), nil
}

// setFromEntries rebuilds the set a leader published from its catalog
// entries: names, ids, every address, health and attributes. Entries
// without owner's mark are left out.
func setFromEntries(owner string, svc bridge.Service, entries []*api.ServiceEntry) bridge.Set {
	set := bridge.Set{Service: svc}
	for _, e := range entries {
		if !owned(e, owner) {
			continue
		}
		meta := e.Service.Meta
		p := bridge.Peer{Name: meta[metaPeerName], ID: meta[metaPeerID]}
		if svc.Port == 0 && e.Service.Port > 0 && e.Service.Port <= 65535 {
			// Without a topology port, the service's port is the peer's
			// own (Desired wrote PortFor), which the follower's SRV
			// records must carry too. With one, PortFor ignores it.
			p.Port = uint16(e.Service.Port)
		}
		if p.Name == "" {
			p.Name = e.Node.Node
		}
		for _, s := range strings.Split(meta[metaPeerAddrs], ",") {
			if a, err := netip.ParseAddr(s); err == nil {
				p.Addrs = append(p.Addrs, a)
			}
		}
		if len(p.Addrs) == 0 {
			if a, err := netip.ParseAddr(e.Node.Address); err == nil {
				p.Addrs = append(p.Addrs, a)
			}
		}
		for _, c := range e.Checks {
			if c.CheckID == checkIDFor(svc.Name) {
				p.Health = bridge.HealthPassing
				if c.Status == api.HealthCritical {
					p.Health = bridge.HealthCritical
				}
			}
		}
		for k, v := range meta {
			if !strings.HasPrefix(k, "peerbridge-") {
				if p.Attrs == nil {
					p.Attrs = map[string]string{}
				}
				p.Attrs[k] = v
			}
		}
		set.Peers = append(set.Peers, p)
	}
	return set.Normalize()
}
