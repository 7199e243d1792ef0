package consulpub

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// Follow is what a follower replica runs instead of polling: one blocking
// query per topology on the owner's catalog entries, each answer turned
// back into the set the leader published and handed to publish (the DNS
// server). ready is called once per topology, after its first answer.
// Errors keep the last set and are retried with backoff. Follow returns
// when ctx is done.
func Follow(ctx context.Context, client *api.Client, owner string, services []bridge.Service,
	publish func(context.Context, bridge.Set) error, ready func(topology string), log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	for _, svc := range services {
		go func() {
			defer func() { done <- struct{}{} }()
			follow(ctx, client.Health(), owner, svc, publish, ready, log.With("topology", svc.Topology))
		}()
	}
	for range services {
		<-done
	}
}

func follow(ctx context.Context, health *api.Health, owner string, svc bridge.Service,
	publish func(context.Context, bridge.Set) error, ready func(string), log *slog.Logger) {
	var index uint64
	var backoff bridge.Retry
	first := true
	for ctx.Err() == nil {
		// No node-meta filter here: for blocking queries Consul 1.20's
		// streaming backend turns it into a filter expression without
		// quoting the key, and a key with a hyphen fails to parse (HTTP
		// 500). SetFromEntries keeps the owner's entries instead.
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx)
		entries, meta, err := health.Service(svc.Name, "", false, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff.Failed()
			log.Warn("watching consul failed, keeping the last peer set", "error", err, "retry_in", wait)
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
		if err := publish(ctx, SetFromEntries(owner, svc, entries)); err != nil {
			log.Warn("publishing the leader's peer set failed", "error", err)
			continue
		}
		if first {
			first = false
			ready(svc.Topology)
		}
	}
}

// SetFromEntries rebuilds the set a leader published from its catalog
// entries: names, ids, every address, health and attributes. Entries
// without owner's mark are left out.
func SetFromEntries(owner string, svc bridge.Service, entries []*api.ServiceEntry) bridge.Set {
	set := bridge.Set{Service: svc}
	for _, e := range entries {
		if e.Node == nil || e.Service == nil || e.Node.Meta[MetaOwner] != owner {
			continue
		}
		meta := e.Service.Meta
		p := bridge.Peer{Name: meta[metaPeerName], ID: meta[metaPeerID]}
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
			if c.CheckID == CheckID(svc.Name) {
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
