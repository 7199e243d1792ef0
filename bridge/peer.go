// Package bridge is peerbridge's domain: the peer set that providers produce
// and publishers consume, the contracts between them, and the reconcile loop
// that moves one topology's peers from its provider to every publisher.
//
// Nothing else passes between packages. bridge imports none of the
// providers or publishers; they import bridge.
package bridge

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
)

// Health is a provider's verdict on a peer. Publishers leave critical peers
// out of DNS and mark them critical in Consul.
type Health uint8

const (
	// HealthUnknown means no health check is configured for the topology.
	HealthUnknown Health = iota
	// HealthPassing means the peer answered its health check.
	HealthPassing
	// HealthCritical means the peer failed its health check.
	HealthCritical
)

func (h Health) String() string {
	switch h {
	case HealthPassing:
		return "passing"
	case HealthCritical:
		return "critical"
	default:
		return "unknown"
	}
}

// Peer is one member of a cluster as a provider sees it.
type Peer struct {
	// Name is the provider's name for the peer (a droplet or container
	// name). Publishers derive DNS labels and Consul node names from it.
	Name string
	// ID is the provider's stable identifier (droplet id, container uuid).
	ID string
	// Addrs holds the addresses to publish: v4, v6 or both.
	Addrs []netip.Addr
	// Port is the peer's own port, for providers that know one per peer
	// (an ECS task's host port, a Nomad registration's port). Zero means
	// the topology's port (Service.Port); a configured PEERBRIDGE_PORT
	// wins over it in every publisher (see Service.PortFor).
	Port uint16
	// Health is the verdict of the topology's health check, if any.
	Health Health
	// Attrs are provider attributes (region, size, ...) carried into TXT
	// records and Consul service meta.
	Attrs map[string]string
}

// Published reports whether the peer belongs in DNS answers.
func (p Peer) Published() bool { return p.Health != HealthCritical }

func (p Peer) clone() Peer {
	p.Addrs = slices.Clone(p.Addrs)
	p.Attrs = maps.Clone(p.Attrs)
	return p
}

func (p Peer) equal(q Peer) bool {
	return p.Name == q.Name && p.ID == q.ID && p.Port == q.Port && p.Health == q.Health &&
		slices.Equal(p.Addrs, q.Addrs) && maps.Equal(p.Attrs, q.Attrs)
}

func comparePeers(a, b Peer) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
}

// Service describes the topology a set belongs to: what publishers need
// besides the peers themselves.
type Service struct {
	// Topology is the configuration key (web in PEERBRIDGE_WEB_...).
	Topology string
	// Name is the service name: a DNS label and the Consul service name.
	Name string
	// Provider names the source of the peers: its ProviderInfo.Name.
	Provider string
	// Port is the peers' port for SRV records and Consul services.
	Port uint16
	// PortName, when set, adds _<PortName>._tcp SRV records.
	PortName string
	// NodeBasename, when set, adds basename@ip TXT records for Erlang.
	NodeBasename string
}

// PortFor is the port to publish for p (SRV, Consul, /sd/prometheus): the
// topology's port when one is configured, else the peer's own.
func (s Service) PortFor(p Peer) uint16 {
	if s.Port != 0 {
		return s.Port
	}
	return p.Port
}

// Set is the full set of peers of one topology: the one type that flows
// from providers through the loop to publishers. A Set that passed through
// Normalize is sorted and owns its slices, so it may be shared read-only.
type Set struct {
	Service Service
	Peers   []Peer
}

// Normalize returns a deep copy of s with peers sorted by name and id,
// addresses sorted and unique, and IPv4-mapped IPv6 addresses unmapped.
// Providers return peers in whatever order their API does; normalizing
// makes equal sets compare equal.
func (s Set) Normalize() Set {
	out := Set{Service: s.Service, Peers: make([]Peer, 0, len(s.Peers))}
	for _, p := range s.Peers {
		p = p.clone()
		for i, a := range p.Addrs {
			p.Addrs[i] = a.Unmap()
		}
		slices.SortFunc(p.Addrs, netip.Addr.Compare)
		p.Addrs = slices.Compact(p.Addrs)
		out.Peers = append(out.Peers, p)
	}
	slices.SortFunc(out.Peers, comparePeers)
	return out
}

// Equal reports whether two normalized sets hold the same service and peers.
func (s Set) Equal(t Set) bool {
	return s.Service == t.Service && slices.EqualFunc(s.Peers, t.Peers, Peer.equal)
}

// PublishedCount is the number of peers that DNS would answer with.
func (s Set) PublishedCount() int {
	n := 0
	for _, p := range s.Peers {
		if p.Published() {
			n++
		}
	}
	return n
}
