package droplet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/digitalocean/godo"

	"github.com/peerbridge/peerbridge/bridge"
)

// listAll follows links.pages.next from page 1 until a page has none. A
// last page may have no links, empty links or empty pages.
func (p *Provider) listAll(ctx context.Context) ([]godo.Droplet, error) {
	var all []godo.Droplet
	opt := &godo.ListOptions{Page: 1, PerPage: perPage}
	for range maxPages {
		droplets, resp, err := p.list(ctx, opt)
		p.noteRate(resp)
		if err != nil {
			return nil, fmt.Errorf("listing droplets page %d: %w", opt.Page, classify(err))
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
		return 0, fmt.Errorf("%w: bad next link: %v", bridge.ErrTransient, err)
	}
	next, err := strconv.Atoi(u.Query().Get("page"))
	if err != nil || next <= current {
		// A next link that does not move forward would loop forever.
		return 0, fmt.Errorf("%w: next link %q does not lead past page %d", bridge.ErrTransient, resp.Links.Pages.Next, current)
	}
	return next, nil
}

func (p *Provider) noteRate(resp *godo.Response) {
	if resp == nil || resp.Header.Get("Ratelimit-Remaining") == "" {
		return
	}
	p.rateLimit.Store(int64(resp.Rate.Limit))
	p.rateRemaining.Store(int64(resp.Rate.Remaining))
}

// classify marks what an API error means for the loop: rejected
// credentials are not transient; rate limits carry the server's wait;
// server errors, timeouts and malformed bodies are transient.
func classify(err error) error {
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		switch code := er.Response.StatusCode; {
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return fmt.Errorf("the API rejected the token (HTTP %d), check DIGITALOCEAN_TOKEN: %w", code, err)
		case code == http.StatusTooManyRequests:
			return &rateLimited{wait: retryAfter(er.Response.Header, time.Now()), err: err}
		case code >= 500:
			return fmt.Errorf("%w: %w", bridge.ErrTransient, err)
		default:
			return err
		}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// Connection errors, timeouts, malformed JSON: all worth another try.
	return fmt.Errorf("%w: %w", bridge.ErrTransient, err)
}

// retryAfter is how long a 429 asks to wait: retry-after in seconds, else
// until ratelimit-reset when the budget is spent, else a minute.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if h.Get("Ratelimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(h.Get("Ratelimit-Reset"), 10, 64); err == nil {
			if d := time.Unix(reset, 0).Sub(now); d > 0 {
				return d
			}
		}
	}
	return time.Minute
}

// rateLimited is a 429 with the wait the server asked for.
type rateLimited struct {
	wait time.Duration
	err  error
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("rate limited, retry in %s: %v", e.wait, e.err)
}
func (e *rateLimited) Unwrap() error             { return e.err }
func (e *rateLimited) RetryAfter() time.Duration { return e.wait }
func (e *rateLimited) Is(target error) bool      { return target == bridge.ErrTransient }
