package consulpub

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// Meta keys peerbridge sets. The owner mark is what makes an entry
// peerbridge's: nothing without it is ever changed or removed.
const (
	metaOwner    = "peerbridge-owner"
	metaExternal = "external-node"  // consul-esm's mark of an external node
	metaProbe    = "external-probe" // asks consul-esm to probe the node too
	metaProvider = "peerbridge-provider"
	metaPeerID   = "peerbridge-peer-id"
	// A follower replica rebuilds the leader's set from these.
	metaPeerName  = "peerbridge-peer-name"
	metaPeerAddrs = "peerbridge-addrs"
)

// Consul's limits on service meta (agent/structs: validateMetaPair).
const (
	maxMetaKey   = 128
	maxMetaValue = 512
)

var metaKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// owned is the one rule for what is peerbridge's to change, remove or
// read back: a service entry on a node that carries owner's mark.
func owned(e *api.ServiceEntry, owner string) bool {
	return e != nil && e.Service != nil && ownedNode(e.Node, owner)
}

func ownedNode(n *api.Node, owner string) bool {
	return n != nil && n.Meta[metaOwner] == owner
}

// CheckID is the id of the check that carries peerbridge's health verdict.
func checkIDFor(service string) string { return "peerbridge:" + service }

// Desired returns the catalog registrations for a set, by node name: one
// external node per peer, critical peers included (their check says so).
func Desired(owner string, tags []string, set bridge.Set) map[string]*api.CatalogRegistration {
	svc := set.Service
	labels := bridge.Labels(set.Peers)
	out := make(map[string]*api.CatalogRegistration, len(set.Peers))
	for i, p := range set.Peers {
		if len(p.Addrs) == 0 {
			continue
		}
		node := nodeName(owner, svc.Name, labels[i])
		addr := p.Addrs[0].String() // IPv4 first: sets are normalized
		nodeMeta := map[string]string{metaOwner: owner, metaExternal: "true"}
		if p.Health != bridge.HealthUnknown {
			nodeMeta[metaProbe] = "true"
		}
		reg := &api.CatalogRegistration{
			Node:            node,
			Address:         addr,
			NodeMeta:        nodeMeta,
			TaggedAddresses: taggedAddresses(p),
			Service: &api.AgentService{
				ID:      svc.Name,
				Service: svc.Name,
				// The peer's own port (an ECS task's host port) unless
				// the topology's is configured, as in SRV records.
				Port:    int(svc.PortFor(p)),
				Address: addr,
				Tags:    slices.Clone(tags),
				Meta:    serviceMeta(svc, p),
			},
		}
		if p.Health != bridge.HealthUnknown {
			status := api.HealthPassing
			if p.Health == bridge.HealthCritical {
				status = api.HealthCritical
			}
			reg.Checks = api.HealthChecks{{
				Node: node, CheckID: checkIDFor(svc.Name), Name: "peerbridge health check",
				Status: status, Output: "peerbridge: " + status,
				ServiceID: svc.Name, ServiceName: svc.Name,
			}}
		}
		out[node] = reg
	}
	return out
}

// nodeName is a peer's node: owner, service and the peer's label, so that
// owners and topologies never share a node.
func nodeName(owner, service, label string) string {
	return owner + "-" + service + "-" + label
}

func taggedAddresses(p bridge.Peer) map[string]string {
	var tagged map[string]string
	for _, a := range p.Addrs {
		key := "lan_ipv4"
		if a.Is6() {
			key = "lan_ipv6"
		}
		if tagged == nil {
			tagged = map[string]string{}
		}
		if _, dup := tagged[key]; !dup {
			tagged[key] = a.String()
		}
	}
	if len(tagged) < 2 {
		return nil // the node address says it all
	}
	return tagged
}

// serviceMeta carries the provider and the peer's attributes, within what
// Consul accepts: keys of letters, digits, _ and -, not starting with
// "consul-", at most 128 bytes; values of at most 512.
func serviceMeta(svc bridge.Service, p bridge.Peer) map[string]string {
	// The owner mark is on the node, which is what is owned.
	addrs := make([]string, len(p.Addrs))
	for i, a := range p.Addrs {
		addrs[i] = a.String()
	}
	meta := map[string]string{
		metaProvider: svc.Provider, metaPeerID: p.ID, metaPeerName: p.Name, metaPeerAddrs: strings.Join(addrs, ","),
	}
	for k, v := range p.Attrs {
		if len(k) > maxMetaKey || !metaKeyRE.MatchString(k) || strings.HasPrefix(k, "consul-") || strings.HasPrefix(k, "peerbridge-") {
			continue
		}
		if len(v) > maxMetaValue {
			v = v[:maxMetaValue]
		}
		meta[k] = v
	}
	return meta
}

// changeSet is what it takes to bring the catalog in line.
type changeSet struct {
	// Create and Update are the registrations to write.
	Create, Update []*api.CatalogRegistration
	// Delete lists nodes to deregister.
	Delete []string
	// DropChecks lists checks to remove from nodes that no longer have a
	// health check configured.
	DropChecks []*api.CatalogDeregistration
	// Read holds this owner's entries as read, by node: their indexes
	// make updates, deletions and dropped checks check-and-set, so that
	// an entry changed since it was read is not overwritten.
	Read map[string]*api.ServiceEntry
}

// Writes is the number of entries to write (registrations, deletions,
// dropped checks); they travel in far fewer transactions.
func (c changeSet) Writes() int {
	return len(c.Create) + len(c.Update) + len(c.Delete) + len(c.DropChecks)
}

// plan compares what is wanted with what the catalog holds for one service
// and returns the changes, sorted by node. Entries without owner's mark
// are left alone, whatever their name.
func plan(owner string, want map[string]*api.CatalogRegistration, have []*api.ServiceEntry) changeSet {
	c := changeSet{Read: map[string]*api.ServiceEntry{}}
	seen := map[string]bool{}
	for _, e := range have {
		if !owned(e, owner) {
			continue
		}
		name := e.Node.Node
		seen[name] = true
		w, ok := want[name]
		switch {
		case !ok:
			c.Delete = append(c.Delete, name)
		case !same(w, e):
			c.Update = append(c.Update, w)
		}
		if ok && len(w.Checks) == 0 && hasCheck(e, checkIDFor(w.Service.Service)) {
			c.DropChecks = append(c.DropChecks, &api.CatalogDeregistration{Node: name, CheckID: checkIDFor(w.Service.Service)})
		}
		c.Read[name] = e
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if !seen[name] {
			c.Create = append(c.Create, want[name])
		}
	}
	byNode := func(a, b *api.CatalogRegistration) int { return strings.Compare(a.Node, b.Node) }
	slices.SortFunc(c.Update, byNode)
	slices.Sort(c.Delete)
	return c
}

// same compares the fields peerbridge sets; what Consul fills in itself
// (weights, proxy settings, indexes) does not count.
func same(w *api.CatalogRegistration, e *api.ServiceEntry) bool {
	s := e.Service
	if e.Node.Address != w.Address || !maps.Equal(e.Node.Meta, w.NodeMeta) ||
		!maps.Equal(e.Node.TaggedAddresses, w.TaggedAddresses) ||
		s.ID != w.Service.ID || s.Service != w.Service.Service || s.Port != w.Service.Port ||
		s.Address != w.Service.Address || !slices.Equal(s.Tags, w.Service.Tags) ||
		!maps.Equal(s.Meta, w.Service.Meta) {
		return false
	}
	for _, wc := range w.Checks {
		var hc *api.HealthCheck
		for _, c := range e.Checks {
			if c.CheckID == wc.CheckID {
				hc = c
			}
		}
		if hc == nil || hc.Status != wc.Status || hc.Output != wc.Output || hc.Name != wc.Name || hc.ServiceID != wc.ServiceID {
			return false
		}
	}
	return true
}

func hasCheck(e *api.ServiceEntry, id string) bool {
	for _, c := range e.Checks {
		if c.CheckID == id {
			return true
		}
	}
	return false
}

// peerNode is a peer's node name in the catalog.
type peerNode struct {
	node, peer string
}

// nodeNames returns the node names of set's peers that Desired registers.
func nodeNames(owner string, set bridge.Set) []peerNode {
	labels := bridge.Labels(set.Peers)
	out := make([]peerNode, 0, len(set.Peers))
	for i, p := range set.Peers {
		if len(p.Addrs) > 0 {
			out = append(out, peerNode{nodeName(owner, set.Service.Name, labels[i]), p.Name})
		}
	}
	return out
}

// Collision is a node name that peers of two topologies map to: NodeName
// joins owner, service and label with hyphens, so service web's peer
// api-1 and service web-api's peer 1 are both node owner-web-api-1. A
// node holds one peer's address: Topology's peer keeps it, Other's is not
// registered.
type Collision struct {
	Node                             string
	Topology, Peer, Other, OtherPeer string
}

func (c Collision) Error() string {
	return fmt.Sprintf("consul node %s: peer %q of topology %s and peer %q of topology %s both map to it; "+
		"only %s's is registered (rename a service, or a peer)", c.Node, c.Peer, c.Topology, c.OtherPeer, c.Other, c.Topology)
}

// Collisions returns the node names that peers of several sets map to,
// by node and then skipped topology. Of the topologies that share a node,
// the first by name keeps it, so that every sync, and every leader,
// decides alike.
func Collisions(owner string, sets []bridge.Set) []Collision {
	names := make(map[string][]peerNode, len(sets))
	for _, s := range sets {
		names[s.Service.Topology] = nodeNames(owner, s)
	}
	m := collisions(names)
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b Collision) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), strings.Compare(a.Other, b.Other))
	})
	return out
}

// clash is a node that a topology's peer does not get.
type clash struct{ node, topology string }

func collisions(names map[string][]peerNode) map[clash]Collision {
	type claim struct{ topology, peer string }
	first := map[string]claim{}
	out := map[clash]Collision{}
	for _, t := range slices.Sorted(maps.Keys(names)) {
		for _, n := range names[t] {
			c, taken := first[n.node]
			if !taken {
				first[n.node] = claim{t, n.peer}
				continue
			}
			out[clash{n.node, t}] = Collision{Node: n.node, Topology: c.topology, Peer: c.peer, Other: t, OtherPeer: n.peer}
		}
	}
	return out
}
