package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/peerbridge/peerbridge/bridge"
)

// Prometheus' http_sd labels. Those starting with __meta_ are dropped after
// relabelling, as every discovery's are.
const (
	sdLabelPrefix     = "__meta_peerbridge_"
	sdTopology        = sdLabelPrefix + "topology"
	sdService         = sdLabelPrefix + "service"
	sdPeer            = sdLabelPrefix + "peer"
	sdProviderID      = sdLabelPrefix + "provider_id"
	sdAddresses       = sdLabelPrefix + "addresses"
	sdAttrLabelPrefix = sdLabelPrefix + "attr_"
)

// targetGroup is one entry of Prometheus' http_sd answer.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// serveSD answers GET /sd/prometheus from the sets DNS serves (on a
// follower, those the leader wrote to Consul), read afresh on every
// request. ?topology= (repeatable) narrows the answer; a topology that is
// not configured is a 404, so that a misspelt one fails loudly in
// Prometheus' discovery instead of quietly discovering nothing.
func serveSD(st *state) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		topologies := st.topologies
		if want := r.URL.Query()["topology"]; len(want) > 0 {
			for _, t := range want {
				if !slices.Contains(st.topologies, t) {
					http.Error(w, fmt.Sprintf("no topology %q", t), http.StatusNotFound)
					return
				}
			}
			topologies = slices.DeleteFunc(slices.Clone(st.topologies), func(t string) bool { return !slices.Contains(want, t) })
		}
		groups := sdTargetGroups(st.dns.Sets(), topologies)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(groups)
	}
}

// sdTargetGroups returns one target group per published peer of the named
// topologies, in the order of the names and then of the peers (sorted by
// name and id). A topology
// without a first discovery has no set and so no groups.
//
// A peer is one target, <address>:<port> with the port PortFor gives
// (just the address when neither topology nor peer has a port), on its
// first address: IPv4 before IPv6, as the
// Consul node address. Scraping each address would scrape the same node
// twice; __meta_peerbridge_addresses lists them all for relabelling.
func sdTargetGroups(sets map[string]bridge.Set, topologies []string) []targetGroup {
	groups := []targetGroup{} // [] rather than null when there is none
	for _, name := range topologies {
		set, ok := sets[name]
		if !ok {
			continue
		}
		// Labels over the whole set, critical peers too, as DNS does, so
		// that a peer's label is its DNS name's and does not move with
		// the health of others.
		labels := bridge.Labels(set.Peers)
		for i, p := range set.Peers {
			if !p.Published() || len(p.Addrs) == 0 {
				continue
			}
			addrs := make([]string, len(p.Addrs))
			for j, a := range p.Addrs {
				addrs[j] = a.String()
			}
			id := p.ID
			if id == "" {
				id = p.Name
			}
			g := targetGroup{
				Targets: []string{sdTarget(p.Addrs[0], set.Service.PortFor(p))},
				Labels: map[string]string{
					sdTopology:   set.Service.Topology,
					sdService:    set.Service.Name,
					sdPeer:       labels[i],
					sdProviderID: id,
					sdAddresses:  strings.Join(addrs, ","),
				},
			}
			// Sorted, so that when two attribute names sanitise alike the
			// same one wins every time: the first by its original name.
			for _, k := range slices.Sorted(maps.Keys(p.Attrs)) {
				l := sdAttrLabelPrefix + sanitizeLabelName(k)
				if _, taken := g.Labels[l]; !taken {
					g.Labels[l] = p.Attrs[k]
				}
			}
			groups = append(groups, g)
		}
	}
	return groups
}

// sdTarget is host:port with IPv6 in brackets; without a port, the bare
// host (bracketed too), to which Prometheus adds the scheme's port.
func sdTarget(a netip.Addr, port uint16) string {
	if port == 0 {
		if a.Is6() {
			return "[" + a.String() + "]"
		}
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// sanitizeLabelName makes s a valid Prometheus label name suffix
// ([a-zA-Z0-9_]*; the prefix supplies the leading letter): every other byte
// becomes an underscore, as Prometheus' own discoveries do with tag names.
func sanitizeLabelName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
