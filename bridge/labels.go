package bridge

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
)

const maxLabel = 63

// label turns a provider's peer name into a DNS label (RFC 1123 host
// label): lower case letters, digits and inner hyphens, at most 63 bytes.
// Anything else becomes a hyphen, runs of hyphens collapse, and a name with
// nothing usable left becomes "peer".
func label(name string) string {
	if isLabel(name) {
		return name // the usual case: no copy
	}
	b := make([]byte, 0, min(len(name), maxLabel))
	hyphen := false
	for i := 0; i < len(name) && len(b) < maxLabel; i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			b = append(b, c)
			hyphen = false
			continue
		}
		if !hyphen && len(b) > 0 {
			b = append(b, '-')
			hyphen = true
		}
	}
	s := strings.TrimRight(string(b), "-")
	if s == "" {
		return "peer"
	}
	return s
}

// isLabel reports whether label(name) is name itself: lower-case letters,
// digits and single hyphens inside, at most 63 octets.
func isLabel(name string) bool {
	if name == "" || len(name) > maxLabel || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && name[i-1] != '-':
		default:
			return false
		}
	}
	return true
}

// Labels gives every peer a DNS label unique within its set, for DNS names
// and Consul node names alike. Peers whose names map to the same label are
// told apart deterministically, from their own name and id rather than
// from their position, so that a peer keeps its label when others come and
// go: the peer whose name already is the label (else the smallest by name
// and id) keeps it, the others get a hash suffix. Give it every peer of a
// set, critical ones too, so that labels do not move with health.
func Labels(peers []Peer) []string {
	labels := make([]string, len(peers))
	// taken counts the peers per label; groups holds only the labels that
	// several peers share, so that a set of unique names, the usual one,
	// costs one map.
	taken := make(map[string]int, len(peers))
	for i, p := range peers {
		labels[i] = label(p.Name)
		taken[labels[i]]++
	}
	groups := map[string][]int{}
	for i, l := range labels {
		if taken[l] > 1 {
			groups[l] = append(groups[l], i)
		}
	}
	for _, base := range slices.Sorted(maps.Keys(groups)) {
		idx := groups[base]
		if len(idx) < 2 {
			continue
		}
		slices.SortFunc(idx, func(a, b int) int {
			pa, pb := peers[a], peers[b]
			return cmp.Or(
				compareBool(pa.Name != base, pb.Name != base),
				cmp.Compare(pa.Name, pb.Name),
				cmp.Compare(pa.ID, pb.ID),
			)
		})
		for _, i := range idx[1:] {
			sum := shortHash(peers[i].Name, peers[i].ID)
			cand := withSuffix(base, sum)
			// Only a 24-bit hash collision or a provider that repeats a name
			// and an id ends up here.
			for n := 2; taken[cand] > 0; n++ {
				cand = withSuffix(base, fmt.Sprintf("%s-%d", sum, n))
			}
			taken[cand] = 1
			labels[i] = cand
		}
	}
	return labels
}

func withSuffix(base, suffix string) string {
	if keep := maxLabel - len(suffix) - 1; len(base) > keep {
		base = strings.TrimRight(base[:keep], "-")
	}
	return base + "-" + suffix
}

func shortHash(name, id string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return fmt.Sprintf("%06x", h.Sum32()&0xffffff)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}
