package hcloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Peers lists every page of running servers that match the filters and
// returns those with an address of the configured kind. Any failure fails
// the whole poll: a partial listing is never a peer set.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	peers, err := p.peers(ctx)
	// Hetzner does not echo tokens, but a proxy in front of it might.
	return peers, platform.Scrub(err, p.opts.Token)
}

func (p *Provider) peers(ctx context.Context) ([]bridge.Peer, error) {
	netID, err := p.network(ctx)
	if err != nil {
		return nil, err
	}
	servers, err := p.listAll(ctx)
	if err != nil {
		return nil, err
	}
	if netID, err = p.recheckNetwork(ctx, netID, servers); err != nil {
		return nil, err
	}
	peers := make([]bridge.Peer, 0, len(servers))
	for _, s := range servers {
		if !p.keep(s) {
			continue
		}
		addrs := p.addresses(s, netID)
		if len(addrs) == 0 {
			p.skips.Skip(fmt.Sprint(s.ID), "server skipped: no address of the configured kind",
				"server_id", s.ID, "server", s.Name, "address", p.describe())
			continue
		}
		peers = append(peers, peer(s, addrs))
	}
	p.skips.PollDone()
	return peers, nil
}

// listAll follows meta.pagination.next_page from page 1 until there is
// none. Servers created or deleted between two pages shift the pages
// under the listing (one is then missed or seen twice); a listing with a
// server twice, or whose pages disagree on total_entries, or whose count
// disagrees with it, is therefore no peer set either, but a listing whose
// pages disagree (bridge.ErrInconsistentListing). A page without its
// servers key (another API's JSON, {}) is malformed, never zero servers.
//
// A page whose body is the same as on the last complete listing is not
// decoded again (platform.Pages): the SDK decodes a stub with the page's
// pagination, and the page's servers are what it gave last time, trimmed
// to what peerbridge reads. The checks above run on every page alike.
func (p *Provider) listAll(ctx context.Context) ([]*hcloud.Server, error) {
	opts := hcloud.ServerListOpts{
		ListOpts: hcloud.ListOpts{Page: 1, PerPage: perPage, LabelSelector: p.opts.LabelSelector},
		Name:     p.opts.Name,
		Status:   []hcloud.ServerStatus{hcloud.ServerStatusRunning},
	}
	var all []*hcloud.Server
	seen := make(map[int64]int, p.lastCount.Load()) // server id: the page it was on
	total := -1
	listing := p.pages.Begin()
	for range maxPages {
		pctx, fetch := listing.Request(ctx, strconv.Itoa(opts.Page))
		servers, resp, err := p.client.Server.List(pctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing servers page %d: %w", opts.Page, classify(resp, err))
		}
		if err := hasKey(resp, "servers"); err != nil {
			return nil, fmt.Errorf("listing servers page %d: %w", opts.Page, err)
		}
		if cached, ok := fetch.Unchanged(); ok {
			servers = cached
		} else {
			p.decoded.Add(1)
			servers = trim(servers)
			fetch.Keep(servers, stub(resp))
		}
		for _, s := range servers {
			if page, dup := seen[s.ID]; dup {
				return nil, platform.Inconsistent(fmt.Errorf("listing servers page %d: server %d was on page %d already", opts.Page, s.ID, page))
			}
			seen[s.ID] = opts.Page
			all = append(all, s)
		}
		pg := resp.Meta.Pagination
		if pg == nil {
			// No pagination: an API that serves everything at once.
			return p.done(listing, all), nil
		}
		// total_entries is null (0) when the API does not know it.
		if pg.TotalEntries > 0 {
			if total >= 0 && pg.TotalEntries != total {
				return nil, changed(len(all), opts.Page, pg.TotalEntries)
			}
			total = pg.TotalEntries
		}
		if pg.NextPage == 0 {
			if total > 0 && total != len(all) {
				return nil, changed(len(all), opts.Page, total)
			}
			return p.done(listing, all), nil
		}
		if pg.NextPage <= opts.Page {
			// A next page that does not move forward would loop forever.
			return nil, platform.Transient(fmt.Errorf("listing servers page %d: next_page %d does not lead past it", opts.Page, pg.NextPage))
		}
		opts.Page = pg.NextPage
	}
	return nil, fmt.Errorf("listing servers: more than %d pages", maxPages)
}

// done ends a complete, consistent listing: its pages become the ones
// the next listing compares with.
func (p *Provider) done(listing *platform.Listing[[]*hcloud.Server], all []*hcloud.Server) []*hcloud.Server {
	listing.Done()
	p.lastCount.Store(int64(len(all)))
	return all
}

// trim keeps of each server what keep, addresses, peer and the network
// check read: the SDK's servers carry their type's prices, image,
// datacenter and more, which would otherwise stay in memory with the
// page.
func trim(servers []*hcloud.Server) []*hcloud.Server {
	out := make([]*hcloud.Server, len(servers))
	for i, s := range servers {
		t := &hcloud.Server{ID: s.ID, Name: s.Name, Status: s.Status, Labels: s.Labels}
		t.PublicNet.IPv4.IP = s.PublicNet.IPv4.IP
		t.PublicNet.IPv6.IP = s.PublicNet.IPv6.IP
		t.PublicNet.IPv6.Network = s.PublicNet.IPv6.Network
		for _, n := range s.PrivateNet {
			tn := hcloud.ServerPrivateNet{IP: n.IP}
			if n.Network != nil {
				tn.Network = &hcloud.Network{ID: n.Network.ID}
			}
			t.PrivateNet = append(t.PrivateNet, tn)
		}
		if s.Location != nil {
			t.Location = &hcloud.Location{Name: s.Location.Name}
		}
		if s.ServerType != nil {
			t.ServerType = &hcloud.ServerType{Name: s.ServerType.Name}
		}
		out[i] = t
	}
	return out
}

// stub is the body the SDK decodes in place of an unchanged page: no
// servers (an empty list, not a missing one), the same pagination.
func stub(resp *hcloud.Response) []byte {
	var body struct {
		schema.ServerListResponse
		schema.MetaResponse
	}
	body.Servers = []schema.Server{}
	if pg := resp.Meta.Pagination; pg != nil {
		body.Meta.Pagination = &schema.MetaPagination{
			Page: pg.Page, PerPage: pg.PerPage, PreviousPage: pg.PreviousPage,
			NextPage: pg.NextPage, LastPage: pg.LastPage, TotalEntries: pg.TotalEntries,
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil // not kept: the page is decoded next time
	}
	return b
}

// hasKey checks that a 2xx answer's body is a JSON object with key, and
// that it is not null. The SDK decodes any JSON object into an empty
// listing; its answer's Body is a copy left for callers to read.
func hasKey(resp *hcloud.Response, key string) error {
	if resp == nil || resp.Response == nil || resp.Body == nil {
		return platform.Transient(errors.New("malformed answer: no body"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return platform.Transient(fmt.Errorf("reading the answer: %w", err))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return platform.Transient(fmt.Errorf("malformed answer: %w", err))
	}
	if v, ok := obj[key]; !ok || string(v) == "null" {
		return platform.Transient(fmt.Errorf("malformed answer: no %s list in %s", key, platform.Quote(body)))
	}
	return nil
}

func changed(have, pages, total int) error {
	return platform.Inconsistent(fmt.Errorf("listing servers: %d servers over %d pages, the API counts %d: the listing changed while paging",
		have, pages, total))
}

// network returns the private network's ID (0 without one), resolving
// its name on the first poll only.
func (p *Provider) network(ctx context.Context) (int64, error) {
	if p.opts.Network == "" {
		return 0, nil
	}
	p.mu.Lock()
	id := p.netID
	p.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	return p.resolve(ctx)
}

// resolve looks the network up by name: one request.
func (p *Provider) resolve(ctx context.Context) (int64, error) {
	nets, resp, err := p.client.Network.List(ctx, hcloud.NetworkListOpts{Name: p.opts.Network})
	if err != nil {
		return 0, fmt.Errorf("looking up network %q: %w", p.opts.Network, classify(resp, err))
	}
	if len(nets) == 0 {
		// Not transient: someone must create it or fix the setting. The
		// next poll looks again.
		return 0, fmt.Errorf("no private network named %q: the hcloud network setting must name an existing network, or give its ID", p.opts.Network)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.netID != 0 && p.netID != nets[0].ID {
		p.log.Info("private network resolved to a new ID", "network", p.opts.Network, "old_id", p.netID, "id", nets[0].ID)
	}
	p.netID, p.netSeen = nets[0].ID, false
	return p.netID, nil
}

// recheckNetwork looks a named network up again when it stops matching:
// servers were attached to its ID on an earlier poll, and none is now (the
// network was deleted and made again under the same name, with a new
// ID). Only then, so that a network without servers costs no request on
// every poll.
func (p *Provider) recheckNetwork(ctx context.Context, netID int64, servers []*hcloud.Server) (int64, error) {
	if netID == 0 || isID(p.opts.Network) {
		return netID, nil
	}
	attached := false
	for _, s := range servers {
		for _, n := range s.PrivateNet {
			attached = attached || (n.Network != nil && n.Network.ID == netID)
		}
	}
	p.mu.Lock()
	seen := p.netSeen
	p.netSeen = p.netSeen || attached
	p.mu.Unlock()
	if attached || !seen || len(servers) == 0 {
		return netID, nil
	}
	return p.resolve(ctx)
}

func isID(network string) bool {
	for _, c := range network {
		if c < '0' || c > '9' {
			return false
		}
	}
	return network != ""
}

// classify sorts an SDK error for the loop. The SDK parses a 2xx body
// that is no JSON of the expected shape into an error with the answer
// attached, which is a malformed answer: transient, not a refusal.
func classify(resp *hcloud.Response, err error) error {
	if resp == nil || resp.Response == nil {
		return rules.Classify(nil, err)
	}
	if code := resp.StatusCode; code >= 200 && code <= 299 && !errors.Is(err, context.Canceled) {
		return platform.Transient(fmt.Errorf("malformed answer: %w", err))
	}
	return rules.Classify(resp.Response, err)
}
