package droplet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/digitalocean/godo"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// listAll follows links.pages.next from page 1 until a page has none. A
// last page may have no links, empty links or empty pages.
//
// A page without its droplets key (200 {}, or another API's JSON) is
// malformed, never zero droplets: taken as news, two of them emptied a
// topology. A droplet on two pages, or a meta.total that changes between
// pages, is a listing whose pages disagree (bridge.ErrInconsistentListing):
// pages that repeat each other turned 200 droplets into 400 peers.
//
// A page whose body is the same as on the last complete listing is not
// decoded again (platform.Pages): godo decodes a stub with the page's
// links and meta, and the page's droplets are what it gave last time.
// The checks above run on every page alike, cached or decoded.
func (p *Provider) listAll(ctx context.Context) ([]*page, error) {
	var all []*page
	seen := make(map[int]int, p.lastCount.Load()) // droplet id: the page it was on
	total := -1
	listing := p.pages.Begin()
	opt := &godo.ListOptions{Page: 1, PerPage: perPage}
	for range maxPages {
		pctx, fetch := listing.Request(ctx, strconv.Itoa(opt.Page))
		droplets, resp, err := p.list(pctx, opt)
		if err != nil {
			return nil, fmt.Errorf("listing droplets page %d: %w", opt.Page, p.classify(err))
		}
		if droplets == nil {
			// godo leaves the slice nil when the key is missing or null;
			// an empty listing is "droplets": [].
			return nil, platform.Transient(fmt.Errorf("listing droplets page %d: malformed answer: no droplets list", opt.Page))
		}
		pg, ok := fetch.Unchanged()
		if !ok {
			p.decoded.Add(1)
			pg = p.derive(droplets)
			fetch.Keep(pg, stub(resp))
		}
		for _, id := range pg.ids {
			if page, dup := seen[id]; dup {
				return nil, platform.Inconsistent(fmt.Errorf("listing droplets page %d: droplet %d was on page %d already", opt.Page, id, page))
			}
			seen[id] = opt.Page
		}
		if resp != nil && resp.Meta != nil {
			if total >= 0 && resp.Meta.Total != total {
				return nil, platform.Inconsistent(fmt.Errorf("listing droplets page %d: the API counts %d droplets, %d on an earlier page", opt.Page, resp.Meta.Total, total))
			}
			total = resp.Meta.Total
		}
		all = append(all, pg)
		next, err := nextPage(resp, opt.Page)
		if err != nil {
			return nil, fmt.Errorf("listing droplets page %d: %w", opt.Page, err)
		}
		if next == 0 {
			listing.Done()
			p.lastCount.Store(int64(len(seen)))
			return all, nil
		}
		opt.Page = next
	}
	return nil, fmt.Errorf("listing droplets: more than %d pages", maxPages)
}

// page is what one page of droplets gives, kept while the page's body
// stays the same: its droplets' ids (for the duplicate check), the peers
// among them, and those skipped for want of an address. The exclusion of
// the droplet peerbridge runs on is left to Peers: the metadata service
// may learn its id later than the page was decoded.
type page struct {
	ids     []int
	peers   []bridge.Peer
	skipped []skipped
}

type skipped struct {
	id   int
	name string
}

// derive turns a decoded page into its peers.
func (p *Provider) derive(droplets []godo.Droplet) *page {
	pg := &page{ids: make([]int, 0, len(droplets)), peers: make([]bridge.Peer, 0, len(droplets))}
	for _, d := range droplets {
		pg.ids = append(pg.ids, d.ID)
		if d.Status != "active" || !p.matches(d) {
			continue
		}
		addrs := p.addresses(d)
		if len(addrs) == 0 {
			pg.skipped = append(pg.skipped, skipped{id: d.ID, name: d.Name})
			continue
		}
		pg.peers = append(pg.peers, peer(d, addrs))
	}
	return pg
}

// stub is the body godo decodes in place of an unchanged page: no
// droplets (an empty list, not a missing one), the same links and meta.
func stub(resp *godo.Response) []byte {
	root := struct {
		Droplets []struct{}  `json:"droplets"`
		Links    *godo.Links `json:"links,omitempty"`
		Meta     *godo.Meta  `json:"meta,omitempty"`
	}{Droplets: []struct{}{}}
	if resp != nil {
		root.Links, root.Meta = resp.Links, resp.Meta
	}
	b, err := json.Marshal(root)
	if err != nil {
		return nil // not kept: the page is decoded next time
	}
	return b
}

// nextPage returns the page links.pages.next points at, or 0 when there is
// none.
func nextPage(resp *godo.Response, current int) (int, error) {
	if resp == nil || resp.Links == nil || resp.Links.Pages == nil || resp.Links.Pages.Next == "" {
		return 0, nil
	}
	u, err := url.Parse(resp.Links.Pages.Next)
	if err != nil {
		return 0, platform.Transient(fmt.Errorf("bad next link: %w", err))
	}
	next, err := strconv.Atoi(u.Query().Get("page"))
	if err != nil || next <= current {
		// A next link that does not move forward would loop forever.
		return 0, platform.Transient(fmt.Errorf("next link %q does not lead past page %d", resp.Links.Pages.Next, current))
	}
	return next, nil
}

// rules are DigitalOcean's: its RateLimit-Reset is when the oldest
// request leaves the window, worth waiting for when nothing remains.
var rules = platform.Rules{TokenVariable: "DIGITALOCEAN_TOKEN", WaitForReset: true}

// classify marks what an API error means for the loop, and scrubs the
// token from its text: an error body may echo the request's headers.
func (p *Provider) classify(err error) error {
	var resp *http.Response
	var er *godo.ErrorResponse
	if errors.As(err, &er) {
		resp = er.Response
	}
	return platform.Scrub(rules.Classify(resp, err), p.opts.Token)
}
