package gce

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// noResults is the one warning that is no trouble: an empty page, or in
// an aggregated listing a zone without instances (every empty zone says
// so).
const noResults = "NO_RESULTS_ON_PAGE"

// Peers lists every page of the project's instances (in the configured
// zones, or in all of them) and returns the running ones with an address
// of the configured kind. Any failure fails the whole poll: a partial
// listing is never a peer set.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	peers, err := p.peers(ctx)
	// Google does not echo tokens, but a proxy in front of it might.
	return peers, platform.Scrub(err, p.tokens.secrets()...)
}

func (p *Provider) peers(ctx context.Context) ([]bridge.Peer, error) {
	l := &listing{seen: make(map[uint64]string, p.lastCount.Load())}
	var err error
	if len(p.opts.Zones) > 0 {
		l.pages = p.zonePages.Begin()
		for _, zone := range p.opts.Zones {
			if err = p.listZone(ctx, zone, l); err != nil {
				break
			}
		}
	} else {
		l.pages = p.aggregatedPages.Begin()
		err = p.listAggregated(ctx, l)
	}
	if err != nil {
		return nil, err
	}
	l.pages.Done()
	p.lastCount.Store(int64(len(l.seen)))
	peers := make([]bridge.Peer, 0, len(l.instances))
	for _, in := range l.instances {
		if in.Status != "RUNNING" {
			continue
		}
		addr, ok := p.address(in)
		if !ok {
			p.skips.Skip(strconv.FormatUint(in.Id, 10), "instance skipped: no address of the configured kind",
				"instance", in.Name, "id", in.Id, "zone", short(in.Zone), "address", p.opts.Address)
			continue
		}
		peers = append(peers, peer(in, addr))
	}
	p.skips.PollDone()
	return peers, nil
}

// listing gathers one poll's instances; seen maps an id to where it was
// listed first.
type listing struct {
	instances []*compute.Instance
	seen      map[uint64]string
	pages     *platform.Listing[[]scoped]
}

// add takes a page's instances. The same instance twice means pages that
// shifted under the listing (or a zone listed twice): no peer set.
func (l *listing) add(where string, items []*compute.Instance) error {
	for _, in := range items {
		if in == nil {
			continue
		}
		if first, dup := l.seen[in.Id]; dup {
			return platform.Transient(fmt.Errorf("instance %s (id %d) listed twice, in %s and in %s: %w",
				in.Name, in.Id, first, where, bridge.ErrInconsistentListing))
		}
		l.seen[in.Id] = where
		l.instances = append(l.instances, in)
	}
	return nil
}

// listZone reads every page of instances.list in one zone.
func (p *Provider) listZone(ctx context.Context, zone string, l *listing) error {
	call := p.service.Instances.List(p.opts.Project, zone).MaxResults(pageSize)
	if p.opts.Filter != "" {
		call.Filter(p.opts.Filter)
	}
	token := ""
	for page := 1; page <= maxPages; page++ {
		where := fmt.Sprintf("zone %s page %d", zone, page)
		if token != "" {
			call.PageToken(token)
		}
		pctx, fetch := l.pages.Request(ctx, zone+"/"+strconv.Itoa(page))
		list, err := call.Context(pctx).Do()
		if err != nil {
			return fmt.Errorf("listing instances in %s: %w", where, classify(err))
		}
		if w := list.Warning; w != nil && w.Code != noResults {
			return platform.Transient(fmt.Errorf("listing instances in %s: warning %s: %s", where, w.Code, w.Message))
		}
		scopes, ok := fetch.Unchanged()
		if !ok {
			p.decoded.Add(1)
			scopes = []scoped{{items: trim(list.Items)}}
			fetch.Keep(scopes, nil)
		}
		if err := l.add(where, scopes[0].items); err != nil {
			return err
		}
		if list.NextPageToken == "" {
			return nil
		}
		if list.NextPageToken == token {
			return platform.Transient(fmt.Errorf("listing instances in %s: the next page token does not move on", where))
		}
		token = list.NextPageToken
	}
	return fmt.Errorf("listing instances in zone %s: more than %d pages", zone, maxPages)
}

// listAggregated reads every page of instances.aggregatedList: every
// zone at once, the pages spanning zones.
func (p *Provider) listAggregated(ctx context.Context, l *listing) error {
	call := p.service.Instances.AggregatedList(p.opts.Project).MaxResults(pageSize)
	if p.opts.Filter != "" {
		call.Filter(p.opts.Filter)
	}
	token := ""
	for page := 1; page <= maxPages; page++ {
		where := fmt.Sprintf("aggregated page %d", page)
		if token != "" {
			call.PageToken(token)
		}
		pctx, fetch := l.pages.Request(ctx, strconv.Itoa(page))
		list, err := call.Context(pctx).Do()
		if err != nil {
			return fmt.Errorf("listing instances, %s: %w", where, classify(err))
		}
		if len(list.Unreachables) > 0 {
			return platform.Transient(fmt.Errorf("listing instances, %s: unreachable: %s", where, strings.Join(list.Unreachables, ", ")))
		}
		if w := list.Warning; w != nil && w.Code != noResults {
			return platform.Transient(fmt.Errorf("listing instances, %s: warning %s: %s", where, w.Code, w.Message))
		}
		scopes, ok := fetch.Unchanged()
		if !ok {
			p.decoded.Add(1)
			scopes = scopes[:0]
			for _, scope := range slices.Sorted(maps.Keys(list.Items)) {
				s := list.Items[scope]
				if w := s.Warning; w != nil && w.Code != noResults {
					return platform.Transient(fmt.Errorf("listing instances, %s: %s: warning %s: %s", where, scope, w.Code, w.Message))
				}
				scopes = append(scopes, scoped{scope: scope, items: trim(s.Instances)})
			}
			fetch.Keep(scopes, nil)
		}
		for _, s := range scopes {
			if err := l.add(where+" "+s.scope, s.items); err != nil {
				return err
			}
		}
		if list.NextPageToken == "" {
			return nil
		}
		if list.NextPageToken == token {
			return platform.Transient(fmt.Errorf("listing instances, %s: the next page token does not move on", where))
		}
		token = list.NextPageToken
	}
	return fmt.Errorf("listing instances: more than %d aggregated pages", maxPages)
}

// address returns the instance's address of the configured kind, from its
// first network interface (nic0, the one its name resolves to inside the
// VPC).
func (p *Provider) address(in *compute.Instance) (netip.Addr, bool) {
	if len(in.NetworkInterfaces) == 0 || in.NetworkInterfaces[0] == nil {
		return netip.Addr{}, false
	}
	nic := in.NetworkInterfaces[0]
	switch p.opts.Address {
	case Public:
		for _, ac := range nic.AccessConfigs {
			if ac != nil {
				if a, ok := parse(ac.NatIP, false); ok {
					return a, true
				}
			}
		}
	case IPv6:
		if a, ok := parse(nic.Ipv6Address, true); ok {
			return a, true
		}
		for _, ac := range nic.Ipv6AccessConfigs {
			if ac != nil {
				if a, ok := parse(ac.ExternalIpv6, true); ok {
					return a, true
				}
			}
		}
	default:
		return parse(nic.NetworkIP, false)
	}
	return netip.Addr{}, false
}

// parse reads an address of one family; anything else is no address.
func parse(s string, v6 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.IsUnspecified() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	return a, a.Is6() == v6
}

func peer(in *compute.Instance, addr netip.Addr) bridge.Peer {
	id := strconv.FormatUint(in.Id, 10)
	attrs := map[string]string{"id": id}
	set := func(k, v string) {
		if v != "" {
			attrs[k] = v
		}
	}
	set("zone", short(in.Zone))
	set("machine_type", short(in.MachineType))
	if len(in.NetworkInterfaces) > 0 && in.NetworkInterfaces[0] != nil {
		set("network", short(in.NetworkInterfaces[0].Network))
	}
	// Label keys are lowercase letters, digits, _ and -: valid in Consul
	// meta keys and TXT as they are.
	for k, v := range in.Labels {
		attrs["label_"+k] = v
	}
	if in.Tags != nil && len(in.Tags.Items) > 0 {
		// Network tags cannot hold commas.
		attrs["tags"] = strings.Join(slices.Sorted(slices.Values(in.Tags.Items)), ",")
	}
	return bridge.Peer{Name: in.Name, ID: id, Addrs: []netip.Addr{addr}, Attrs: attrs}
}

// short is the last segment of a resource URL
// (https://.../zones/europe-west1-b → europe-west1-b).
func short(u string) string {
	return u[strings.LastIndexByte(u, '/')+1:]
}

// The reasons Compute gives a 403 that is a quota, not a refusal.
var rateReasons = map[string]bool{"rateLimitExceeded": true, "userRateLimitExceeded": true}

// classify sorts a call's error for the loop: a 429, or a 403 for a rate
// limit, backs off (with the server's Retry-After, if any); any other 401
// or 403, and a token endpoint that rejects the credentials, wait for an
// operator; server faults, answers that do not parse and requests that got
// no answer are transient. A cancelled context and the poll's deadline
// pass through. Anything else (a filter Compute rejects, an unknown
// project) is a plain error. The API's error text is shortened: Google's
// bodies can be long.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		var reasons []string
		limited := false
		for _, e := range ge.Errors {
			reasons = append(reasons, e.Reason)
			limited = limited || rateReasons[e.Reason]
		}
		msg := ge.Message
		if msg == "" {
			msg = platform.Quote([]byte(ge.Body))
		} else if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		text := fmt.Sprintf("HTTP %d: %s", ge.Code, msg)
		if len(reasons) > 0 {
			text += " (" + strings.Join(reasons, ", ") + ")"
		}
		short := bridge.Reword(err, text)
		switch code := ge.Code; {
		case code == http.StatusTooManyRequests || code == http.StatusForbidden && limited:
			return &platform.RateLimited{Wait: platform.RetryAfter(ge.Header, time.Now()), Err: short}
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return fmt.Errorf("%w, check the credentials and that they allow compute.instances.list in the project: %w", bridge.ErrCredentials, short)
		case code == http.StatusRequestTimeout || code >= 500:
			return platform.Transient(short)
		}
		return short
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		switch code := re.Response.StatusCode; {
		case code == http.StatusBadRequest || code == http.StatusUnauthorized || code == http.StatusForbidden:
			// invalid_grant, a deleted key, a disabled account.
			return fmt.Errorf("%w: the token endpoint refused the credentials (HTTP %d, %s): %w",
				bridge.ErrCredentials, code, re.ErrorCode, err)
		case code == http.StatusTooManyRequests:
			return &platform.RateLimited{Wait: platform.RetryAfter(re.Response.Header, time.Now()), Err: err}
		}
	}
	// No answer (refused, reset, a metadata server that did not answer), a
	// body that does not decode, or one over the cap.
	return platform.Transient(err)
}
