package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
)

// checkNodeNames looks, before anything runs, for Consul node names that
// peers of two topologies would share (consulpub.Collision): node names
// join owner, service and peer label with hyphens, so service web's peer
// api-1 and service web-api's peer 1 are both node <owner>-web-api-1.
// The peers of topologies whose provider knows them from its
// configuration (bridge.ProviderInfo.Configured: static) are known now: a
// collision among them is an error naming both. Other providers' peers are known once polled, so a
// service name that is another's plus a hyphen and more gets a warning;
// the publisher then skips a colliding peer and logs it.
func checkNodeNames(ctx context.Context, cfg *config, log *slog.Logger) error {
	if cfg.consul == nil || len(cfg.topologies) < 2 {
		return nil
	}
	var sets []bridge.Set
	services := make(map[string]string, len(cfg.topologies)) // topology by service
	for _, t := range cfg.topologies {
		services[t.service] = t.name
		if p, ok := lookupProvider(t.provider); !ok || !p.Configured {
			continue
		}
		p, err := t.newSource(slog.New(slog.DiscardHandler))
		if err != nil {
			return fmt.Errorf("topology %s: %w", t.name, err)
		}
		peers, err := p.Peers(ctx)
		if err != nil {
			return fmt.Errorf("topology %s: %w", t.name, err)
		}
		sets = append(sets, bridge.Set{Service: t.spec(), Peers: peers}.Normalize())
	}
	var errs []error
	for _, c := range consulpub.Collisions(cfg.consul.owner, sets) {
		errs = append(errs, fmt.Errorf("topologies %s and %s: their peers %q and %q would both be Consul node %s; "+
			"rename a service (PEERBRIDGE_<TOPOLOGY>_SERVICE) or a peer", c.Topology, c.Other, c.Peer, c.OtherPeer, c.Node))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, t := range cfg.topologies {
		// Every shorter service that t's service extends by a hyphen: a
		// map lookup per hyphen keeps this linear in the topologies.
		for i := strings.IndexByte(t.service, '-'); i > 0; i = nextHyphen(t.service, i) {
			if other, ok := services[t.service[:i]]; ok {
				log.Warn("configuration: peers of two topologies may get the same Consul node name; such a peer is registered "+
					"only for the first topology by name, and logged", "topology", t.name, "other", other,
					"example", fmt.Sprintf("%s's peer %s and %s's peer %s", other, t.service[i+1:]+"-1", t.name, "1"))
			}
		}
	}
	return nil
}

// nextHyphen is the index of the next hyphen in s after i, or -1.
func nextHyphen(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '-')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
