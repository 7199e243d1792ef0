package consulpub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

// Stamp is what a leader writes to Consul's KV store beside the catalog
// entries, in the same fenced transaction: the zone's SOA serial and, per
// topology, a digest of the set the entries carry. Every replica serves a
// topology from the catalog only once the entries it read match the
// stamp's digest, and then under the stamp's serial, so that replicas that
// serve the same records serve the same serial. The serial grows with each
// change of content and is carried from leader to leader by Consul.
type Stamp struct {
	Serial uint32            `json:"serial"`
	Sets   map[string]string `json:"sets"` // digest by topology
}

// StampKey is where the leader of the election on lockKey keeps the
// stamp.
func StampKey(lockKey string) string { return strings.TrimSuffix(lockKey, "/") + "/stamp" }

// readStamp returns the stamp at key and its ModifyIndex (0 and an empty
// stamp when there is none yet).
func readStamp(kv *api.KV, key string, q *api.QueryOptions) (Stamp, *api.QueryMeta, uint64, error) {
	pair, meta, err := kv.Get(key, q)
	if err != nil {
		return Stamp{}, nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if pair == nil {
		return Stamp{}, meta, 0, nil
	}
	var st Stamp
	if err := json.Unmarshal(pair.Value, &st); err != nil {
		return Stamp{}, meta, pair.ModifyIndex, fmt.Errorf("%s holds no stamp: %w", key, err)
	}
	return st, meta, pair.ModifyIndex, nil
}

// next returns the stamp with topology's digest set to digest: the serial
// grows when the digest changes, and stays when only the entries are
// repaired to what the stamp already says.
func (s Stamp) next(topology, digest string, now time.Time) Stamp {
	out := Stamp{Serial: s.Serial, Sets: maps.Clone(s.Sets)}
	if out.Sets == nil {
		out.Sets = map[string]string{}
	}
	if out.Sets[topology] != digest || out.Serial == 0 {
		out.Serial = bridge.NextSerial(s.Serial, now)
	}
	out.Sets[topology] = digest
	return out
}

// setDigest is a digest of what a follower rebuilds from a set's catalog
// entries: names, ids, addresses, health and attributes of the peers.
func setDigest(set bridge.Set) string {
	h := sha256.New()
	for _, p := range set.Peers {
		fmt.Fprintf(h, "%q %q %d", p.Name, p.ID, p.Health)
		for _, a := range p.Addrs {
			fmt.Fprintf(h, " %s", a)
		}
		for _, k := range slices.Sorted(maps.Keys(p.Attrs)) {
			fmt.Fprintf(h, " %q=%q", k, p.Attrs[k])
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// asEntries returns the service entries that the registrations become in the
// catalog, as far as setFromEntries reads them: what followers will
// rebuild from a leader's writes.
func asEntries(regs map[string]*api.CatalogRegistration) []*api.ServiceEntry {
	out := make([]*api.ServiceEntry, 0, len(regs))
	for _, name := range slices.Sorted(maps.Keys(regs)) {
		r := regs[name]
		svc := *r.Service
		var checks api.HealthChecks
		for _, c := range r.Checks {
			c := *c
			checks = append(checks, &c)
		}
		out = append(out, &api.ServiceEntry{
			Node:    &api.Node{Node: r.Node, Address: r.Address, Meta: r.NodeMeta, TaggedAddresses: r.TaggedAddresses},
			Service: &svc,
			Checks:  checks,
		})
	}
	return out
}
