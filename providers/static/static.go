// Package static provides peers listed in configuration. It is the default
// provider, so that peerbridge runs on any machine with no cloud account.
package static

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/peerbridge/peerbridge/bridge"
)

// Provider returns the same peers on every poll.
type Provider struct {
	peers []bridge.Peer
}

// New returns a provider of opts.Peers, or fails on what Validate
// rejects.
func New(opts Options) (*Provider, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Provider{peers: opts.Peers}, nil
}

// Peers returns a copy of the configured peers.
func (p *Provider) Peers(context.Context) ([]bridge.Peer, error) {
	out := make([]bridge.Peer, len(p.peers))
	for i, peer := range p.peers {
		peer.Addrs = slices.Clone(peer.Addrs)
		out[i] = peer
	}
	return out, nil
}

// Parse reads "name=addr,name=addr,...". A name given more than once is one
// peer with several addresses (for example its IPv4 and IPv6 address).
// IPv6 addresses may be written in brackets. The peer's id is its name.
// Every bad entry is reported, each naming its position and text.
func Parse(spec string) ([]bridge.Peer, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("no peers given: set name=address pairs, e.g. node1=10.0.0.1,node2=10.0.0.2")
	}
	var (
		peers []bridge.Peer
		index = map[string]int{}
		errs  []error
	)
	for i, entry := range strings.Split(spec, ",") {
		name, addr, err := parseEntry(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d %q: %w", i+1, strings.TrimSpace(entry), err))
			continue
		}
		j, seen := index[name]
		if !seen {
			j = len(peers)
			index[name] = j
			peers = append(peers, bridge.Peer{Name: name, ID: name})
		}
		if slices.Contains(peers[j].Addrs, addr) {
			errs = append(errs, fmt.Errorf("entry %d %q: address listed twice for %s", i+1, strings.TrimSpace(entry), name))
			continue
		}
		peers[j].Addrs = append(peers[j].Addrs, addr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return peers, nil
}

func parseEntry(entry string) (string, netip.Addr, error) {
	name, raw, ok := strings.Cut(strings.TrimSpace(entry), "=")
	name, raw = strings.TrimSpace(name), strings.TrimSpace(raw)
	switch {
	case !ok:
		return "", netip.Addr{}, errors.New("want name=address")
	case name == "":
		return "", netip.Addr{}, errors.New("empty name")
	case raw == "":
		return "", netip.Addr{}, errors.New("empty address")
	}
	if strings.HasPrefix(raw, "[") && strings.HasSuffix(raw, "]") {
		raw = raw[1 : len(raw)-1]
	}
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("%q is not an IP address", raw)
	}
	if addr.Zone() != "" {
		// A zoned address means nothing to a peer that resolves it.
		return "", netip.Addr{}, fmt.Errorf("%q has a zone, which DNS cannot carry", raw)
	}
	return name, addr.Unmap(), nil
}
