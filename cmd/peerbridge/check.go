package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/dnsserver"
)

// check polls every topology once and prints the peers, and the DNS records
// and Consul registrations that would be published. It listens on nothing and publishes nothing, and
// fails if any topology cannot be polled.
func (m *Main) check(ctx context.Context, cfg *config) error {
	preview, err := dnsserver.New(cfg.dns)
	if err != nil {
		return err
	}
	log := newLogger(m.Stderr, cfg.logLevel, cfg.logFormat)
	cfg.logWarnings(log)
	var errs []error
	for _, t := range cfg.topologies {
		source, err := t.newSource(log.With("topology", t.name, "provider", t.provider))
		if err != nil {
			return fmt.Errorf("topology %s: %w", t.name, err)
		}
		peers, err := source.Peers(ctx)
		if err != nil {
			fmt.Fprintf(m.Stdout, "topology %s: poll failed: %v\n", t.name, err)
			errs = append(errs, fmt.Errorf("topology %s: %w", t.name, err))
			continue
		}
		if t.checker != nil {
			t.checker.Check(ctx, peers)
		}
		set := bridge.Set{Service: t.spec(), Peers: peers}.Normalize()
		fmt.Fprintf(m.Stdout, "topology %s: service %s, provider %s, peers: %d (%d published)\n",
			t.name, t.service, t.provider, len(set.Peers), set.PublishedCount())
		for _, p := range set.Peers {
			addrs := make([]string, len(p.Addrs))
			for i, a := range p.Addrs {
				addrs[i] = a.String()
			}
			line := fmt.Sprintf("  %-24s %-40s id=%s health=%s", p.Name, strings.Join(addrs, " "), p.ID, p.Health)
			if len(p.Attrs) > 0 {
				line += " " + kv(p.Attrs)
			}
			fmt.Fprintln(m.Stdout, line)
		}
		if err := preview.Publish(ctx, set); err != nil {
			errs = append(errs, err)
		}
		if cfg.consul != nil {
			printRegistrations(m.Stdout, consulpub.Desired(cfg.consul.owner, cfg.consul.tags, set))
		}
	}
	fmt.Fprintf(m.Stdout, "\nDNS records of zone %s:\n", preview.Zone())
	if err := preview.Snapshot().WriteZone(m.Stdout); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// printRegistrations shows the Consul catalog entries of one topology, a
// line each, sorted by node.
func printRegistrations(w io.Writer, regs map[string]*api.CatalogRegistration) {
	fmt.Fprintln(w, "  Consul registrations:")
	for _, node := range slices.Sorted(maps.Keys(regs)) {
		r := regs[node]
		line := fmt.Sprintf("    node %s address %s node-meta %s service %s port %d tags %v meta %s",
			node, r.Address, kv(r.NodeMeta), r.Service.Service, r.Service.Port, r.Service.Tags, kv(r.Service.Meta))
		for _, c := range r.Checks {
			line += " check " + c.Status
		}
		fmt.Fprintln(w, line)
	}
}

func kv(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
