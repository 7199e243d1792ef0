package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/bridge/statefile"
	"github.com/peerbridge/peerbridge/dnsserver"
)

// savedState is what PEERBRIDGE_STATE_FILE gives a run: the sets to
// start from, and the store that saves every change.
type savedState struct {
	store *statefile.Store        // nil without a state file
	seeds map[string]*bridge.Seed // by topology
}

// restore reads the state file, serves every saved set that still fits
// its topology from DNS at once (before the first poll, before the
// sockets open), keeps the serial above the saved one, and opens the
// store. A missing file is a first start; an unreadable or corrupt one is
// logged and ignored; a path that cannot be written is an error. With HA
// the saved sets are served until the catalog answers, whose serial then
// wins (replicas serving the same records serve the same serial).
func restore(cfg *config, log *slog.Logger, dns *dnsserver.Server) (*savedState, error) {
	out := &savedState{seeds: map[string]*bridge.Seed{}}
	if cfg.stateFile == "" {
		return out, nil
	}
	log = log.With("state_file", cfg.stateFile)
	fingerprints := make(map[string]string, len(cfg.topologies))
	for _, t := range cfg.topologies {
		fingerprints[t.name] = t.fingerprint
	}
	saved, err := statefile.Load(cfg.stateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Info("no saved peer sets: a first start")
	case err != nil:
		log.Warn("saved peer sets ignored", "reason", err)
		saved = statefile.State{}
	default:
		var sets []bridge.Set
		for _, t := range cfg.topologies {
			seed, err := saved.Seed(t.spec(), t.fingerprint)
			if err != nil {
				log.Info("saved peer set ignored", "topology", t.name, "reason", err)
				continue
			}
			out.seeds[t.name] = seed
			sets = append(sets, seed.Set)
		}
		for _, name := range slices.Sorted(maps.Keys(saved.Topologies)) {
			if _, ok := fingerprints[name]; !ok {
				log.Info("saved peer set ignored", "topology", name, "reason", "the topology is no longer configured")
			}
		}
		// A run killed between serving a serial and saving it served at
		// most one change per topology since its last write (a write
		// takes milliseconds, a poll at least a second): start above
		// those too, so that no serial is ever served for two zones.
		dns.Restore(saved.Serial+uint32(len(cfg.topologies)), sets...)
		log.Info("serving saved peer sets", "topologies", len(sets), "serial", dns.Snapshot().Serial())
	}
	out.store, err = statefile.New(statefile.Options{
		Path: cfg.stateFile, Fingerprints: fingerprints, Initial: saved,
		Serial: func() uint32 { return dns.Snapshot().Serial() }, Logger: log.With("component", "state"),
	})
	if err != nil {
		return nil, fmt.Errorf("PEERBRIDGE_STATE_FILE: %w", err)
	}
	// Save the serial just raised at once, so that even a run killed
	// before its first change starts the next above it.
	out.store.Changed()
	return out, nil
}

// savingZone is the zone of an HA replica's follower: the DNS server, and
// the state file, which keeps what the replica serves.
type savingZone struct {
	dns   *dnsserver.Server
	store *statefile.Store
}

func (z savingZone) PublishSerial(ctx context.Context, serial uint32, sets ...bridge.Set) error {
	if err := z.dns.PublishSerial(ctx, serial, sets...); err != nil {
		return err
	}
	if z.store != nil {
		for _, set := range sets {
			z.store.Publish(ctx, set)
		}
		z.store.Changed() // the serial, which may change alone
	}
	return nil
}

// consulWarmTimeout bounds reading the owner's entries at start, so that
// a Consul that is down delays the start by no more than this.
const consulWarmTimeout = 3 * time.Second

// warmFromConsul seeds every topology that has no saved set with the
// entries this owner registered for it in Consul (which the publisher
// adopts anyway): they are its set until the first complete poll, so a
// start with the API down still answers. Without HA only: with HA, every
// replica serves the catalog already.
func warmFromConsul(ctx context.Context, cfg *config, log *slog.Logger, client *api.Client, dns *dnsserver.Server, saved *savedState) {
	if cfg.consul == nil || cfg.ha != nil || client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, consulWarmTimeout)
	defer cancel()
	type result struct {
		svc bridge.Service
		set bridge.Set
		err error
	}
	var pending []bridge.Service
	for _, t := range cfg.topologies {
		if saved.seeds[t.name] == nil {
			pending = append(pending, t.spec())
		}
	}
	results := make(chan result, len(pending))
	for _, svc := range pending {
		go func() {
			set, err := consulpub.Owned(ctx, client, cfg.consul.owner, svc)
			results <- result{svc: svc, set: set, err: err}
		}()
	}
	var sets []bridge.Set
	now := time.Now()
	for range pending {
		r := <-results
		switch {
		case r.err != nil:
			log.Info("no peer set from Consul", "topology", r.svc.Topology, "reason", r.err)
		case len(r.set.Peers) == 0:
			log.Info("no peer set from Consul", "topology", r.svc.Topology, "reason", "no entries of this owner")
		default:
			saved.seeds[r.svc.Topology] = &bridge.Seed{Set: r.set, Source: bridge.SourceConsul, At: now}
			sets = append(sets, r.set)
		}
	}
	if len(sets) > 0 {
		dns.Restore(0, sets...)
		log.Info("serving peer sets read from Consul until the first complete poll", "topologies", len(sets))
	}
}

// fingerprint hashes what decides a topology's peers: its provider, its
// variables (filters, addresses, endpoints: every PEERBRIDGE_ one it
// reads; no token is among them) and its settings as logged at start
// (what vendor variables decide, such as a region; never a secret). A
// saved set is served again only under the same fingerprint.
func fingerprint(provider string, env any, details []any) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q\n%#v\n", provider, env)
	for _, d := range details {
		fmt.Fprintf(h, "%v\n", d)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
