package bridge

// DefaultRemoveAfter is how many consecutive complete polls must miss a
// peer before it leaves the published set, when LoopConfig.RemoveAfter
// is zero.
const DefaultRemoveAfter = 2

// removals holds back the removal of peers until they have been missing
// from removeAfter consecutive complete polls, so that one listing that
// misses a peer (offset pages shifting under a deletion), one failed
// health check or one empty answer never disconnects a node. Peers that
// join are published at once. A peer that turns critical counts as
// missing from DNS: its last published version stays until the verdict
// has held as long.
type removals struct {
	after int
	// missed counts, per peer (name and id), the consecutive complete
	// polls that did not publish it.
	missed map[peerKey]int
}

type peerKey struct{ name, id string }

func keyOf(p Peer) peerKey { return peerKey{p.Name, p.ID} }

// apply returns the set to publish after a complete poll returned next,
// given the set published now (nil for none). Both are normalized; so
// is the result. Failed polls never reach apply: they carry no news and
// neither count towards a removal nor reset one.
func (r *removals) apply(cur *Set, next Set) Set {
	if cur == nil || r.after <= 1 {
		r.missed = nil
		return next
	}
	seen := make(map[peerKey]Peer, len(next.Peers))
	for _, p := range next.Peers {
		seen[keyOf(p)] = p
	}
	missed := map[peerKey]int{}
	out := Set{Service: next.Service, Peers: next.Peers}
	var kept []Peer
	for _, old := range cur.Peers {
		k := keyOf(old)
		now, present := seen[k]
		if present && (now.Published() || !old.Published()) {
			continue // published as polled
		}
		if !old.Published() {
			continue // gone while critical: nothing to keep in DNS
		}
		n := r.missed[k] + 1
		if n >= r.after {
			continue // missing long enough: removed (or published critical)
		}
		missed[k] = n
		kept = append(kept, old)
	}
	r.missed = missed
	if len(kept) == 0 {
		return out
	}
	// Keep the held peers' last published versions in place of the
	// critical ones just polled, if any.
	peers := make([]Peer, 0, len(next.Peers)+len(kept))
	for _, p := range next.Peers {
		if _, held := missed[keyOf(p)]; !held {
			peers = append(peers, p)
		}
	}
	peers = append(peers, kept...)
	return Set{Service: next.Service, Peers: peers}.Normalize()
}

// holding reports whether some peer waits for its removal.
func (r *removals) holding() bool { return len(r.missed) > 0 }
