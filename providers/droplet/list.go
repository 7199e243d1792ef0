package droplet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/digitalocean/godo"

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
func (p *Provider) listAll(ctx context.Context) ([]godo.Droplet, error) {
	var all []godo.Droplet
	seen := map[int]int{} // droplet id: the page it was on
	total := -1
	opt := &godo.ListOptions{Page: 1, PerPage: perPage}
	for range maxPages {
		droplets, resp, err := p.list(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("listing droplets page %d: %w", opt.Page, p.classify(err))
		}
		if droplets == nil {
			// godo leaves the slice nil when the key is missing or null;
			// an empty listing is "droplets": [].
			return nil, platform.Transient(fmt.Errorf("listing droplets page %d: malformed answer: no droplets list", opt.Page))
		}
		for _, d := range droplets {
			if page, dup := seen[d.ID]; dup {
				return nil, platform.Inconsistent(fmt.Errorf("listing droplets page %d: droplet %d was on page %d already", opt.Page, d.ID, page))
			}
			seen[d.ID] = opt.Page
		}
		if resp != nil && resp.Meta != nil {
			if total >= 0 && resp.Meta.Total != total {
				return nil, platform.Inconsistent(fmt.Errorf("listing droplets page %d: the API counts %d droplets, %d on an earlier page", opt.Page, resp.Meta.Total, total))
			}
			total = resp.Meta.Total
		}
		all = append(all, droplets...)
		next, err := nextPage(resp, opt.Page)
		if err != nil {
			return nil, fmt.Errorf("listing droplets page %d: %w", opt.Page, err)
		}
		if next == 0 {
			return all, nil
		}
		opt.Page = next
	}
	return nil, fmt.Errorf("listing droplets: more than %d pages", maxPages)
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
