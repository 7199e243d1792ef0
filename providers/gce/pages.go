package gce

import (
	"bytes"

	"google.golang.org/api/compute/v1"

	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// scoped is a page's instances of one scope (a zone of an aggregated
// page; the one zone of a zone's page), kept while the page stays the
// same, trimmed to what the provider reads.
type scoped struct {
	scope string
	items []*compute.Instance
}

// trim keeps of each instance what peers, address and peer read:
// Compute's instances carry disks, metadata, scheduling and more, which
// would otherwise stay in memory with the page.
func trim(items []*compute.Instance) []*compute.Instance {
	out := make([]*compute.Instance, 0, len(items))
	for _, in := range items {
		if in == nil {
			continue
		}
		t := &compute.Instance{Id: in.Id, Name: in.Name, Status: in.Status, Zone: in.Zone, MachineType: in.MachineType, Labels: in.Labels}
		if in.Tags != nil {
			t.Tags = &compute.Tags{Items: in.Tags.Items}
		}
		if len(in.NetworkInterfaces) > 0 && in.NetworkInterfaces[0] != nil {
			n := in.NetworkInterfaces[0]
			tn := &compute.NetworkInterface{NetworkIP: n.NetworkIP, Network: n.Network, Ipv6Address: n.Ipv6Address}
			for _, ac := range n.AccessConfigs {
				if ac != nil {
					tn.AccessConfigs = append(tn.AccessConfigs, &compute.AccessConfig{NatIP: ac.NatIP})
				}
			}
			for _, ac := range n.Ipv6AccessConfigs {
				if ac != nil {
					tn.Ipv6AccessConfigs = append(tn.Ipv6AccessConfigs, &compute.AccessConfig{ExternalIpv6: ac.ExternalIpv6})
				}
			}
			t.NetworkInterfaces = []*compute.NetworkInterface{tn}
		}
		out = append(out, t)
	}
	return out
}

// Compute's page tokens are opaque, and may be minted anew for the same
// position: the token is left out of the digest, a page is known by its
// position, and the stub carries the answer's own token on. A page
// that is unchanged otherwise passed the warning checks when it was
// decoded (only a complete listing is remembered), so its stub has no
// warnings.
var (
	zoneShape       = platform.Shape{Volatile: volatile, Stub: stub(`{"kind":"compute#instanceList","items":[]`)}
	aggregatedShape = platform.Shape{Volatile: volatile, Stub: stub(`{"kind":"compute#instanceAggregatedList","items":{}`)}
)

var tokenKey = []byte(`"nextPageToken"`)

// token returns the [start, end) offsets of the nextPageToken's string
// (its quotes included); ok false without one. A key cannot hide in a
// string: JSON escapes the quotes inside one.
func token(body []byte) (span [2]int, ok bool) {
	i := bytes.LastIndex(body, tokenKey)
	if i < 0 {
		return span, false
	}
	j := i + len(tokenKey)
	for j < len(body) && (body[j] == ' ' || body[j] == '\n' || body[j] == '\r' || body[j] == '\t' || body[j] == ':') {
		j++
	}
	if j >= len(body) || body[j] != '"' {
		return span, false
	}
	for k := j + 1; k < len(body); k++ {
		switch body[k] {
		case '\\':
			k++
		case '"':
			return [2]int{j, k + 1}, true
		}
	}
	return span, false
}

func volatile(body []byte) [][2]int {
	if t, ok := token(body); ok {
		return [][2]int{t}
	}
	return nil
}

// stub returns the stub maker for a listing whose empty form opens with
// head.
func stub(head string) func(body []byte) []byte {
	return func(body []byte) []byte {
		out := []byte(head)
		if t, ok := token(body); ok {
			out = append(out, `,"nextPageToken":`...)
			out = append(out, body[t[0]:t[1]]...)
		}
		return append(out, '}')
	}
}
