// Package droplet provides the peers of a cluster from DigitalOcean's
// Droplet API: one listing for the whole cluster, instead of every node
// polling the API with a token of its own.
package droplet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/digitalocean/godo"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Defaults, as DigitalOcean documents them.
const (
	DefaultAPIURL      = "https://api.digitalocean.com/"
	DefaultMetadataURL = "http://169.254.169.254/metadata/v1/"
	// perPage is the largest page the API serves: fewer requests per poll.
	perPage = 200
	// maxPages stops a listing whose next links never end.
	maxPages = 10_000
	// maxDroplet is generous for one droplet of a listing: a few KiB of
	// JSON, its size's list of regions and its tags included.
	maxDroplet = 64 << 10
)

// Network is the kind of IPv4 address published. DigitalOcean's IPv6
// addresses are all public, so it does not apply to them.
type Network string

// The networks a droplet has.
const (
	Private Network = "private"
	Public  Network = "public"
)

// ParseNetwork reads "private" or "public".
func ParseNetwork(s string) (Network, error) {
	switch n := Network(strings.ToLower(s)); n {
	case Private, Public:
		return n, nil
	}
	return "", bridge.Invalid("DROPLET_NETWORK", "%q is not private or public", s)
}

// IPVersion selects the address families published.
type IPVersion = platform.IPVersion

// ParseIPVersion reads "4", "6" or "both".
func ParseIPVersion(s string) (IPVersion, error) {
	v, err := platform.ParseIPVersion(s)
	if err != nil {
		return v, &bridge.SettingError{Setting: "DROPLET_IP_VERSION", Err: err}
	}
	return v, nil
}

// Options configure a provider.
type Options struct {
	// Token is the API token. It is sent as a bearer token and never
	// logged or put in an error.
	Token string
	// TokenFrom names the variable the token came from, for the log.
	TokenFrom string
	// APIURL is the API's base URL; empty means DefaultAPIURL.
	APIURL string
	// MetadataURL is the droplet metadata service; empty means
	// DefaultMetadataURL.
	MetadataURL string
	// Tag or Name filter on the server (tag_name, name); at most one.
	Tag, Name string
	// Region and VPC filter on the client; empty matches all.
	Region, VPC string
	Network     Network
	IPVersion   IPVersion
	// ExcludeSelf leaves out the droplet peerbridge runs on.
	ExcludeSelf bool
	// HTTPClient is the base client for the API and the metadata service;
	// nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Provider lists a topology's droplets.
type Provider struct {
	// Meter counts requests and keeps the reported rate limit, for
	// metrics and the auto poll interval.
	*platform.Meter

	list  listFunc
	opts  Options
	self  *selfLookup
	log   *slog.Logger
	skips *platform.Skips

	// pages remembers the last complete listing's pages; decoded counts
	// the pages decoded (not found unchanged), for tests; lastCount, the
	// ids of the last listing, sizes the next one's duplicate check.
	pages     *platform.Pages[*page]
	decoded   atomic.Int64
	lastCount atomic.Int64
}

// listFunc lists one page: one method of godo's DropletsService, bound to
// the filter.
type listFunc func(ctx context.Context, opt *godo.ListOptions) ([]godo.Droplet, *godo.Response, error)

// Validate checks the options, naming each setting that is wrong
// (bridge.SettingError), all at once.
func (o Options) Validate() error {
	var errs []error
	if o.Tag != "" && o.Name != "" {
		errs = append(errs, bridge.Invalid("DROPLET_TAG,DROPLET_NAME",
			"filter by tag or by name, not both: DigitalOcean's API takes one of tag_name and name"))
	}
	if o.Network != "" && o.Network != Private && o.Network != Public {
		errs = append(errs, bridge.Invalid("DROPLET_NETWORK", "%q is not private or public", string(o.Network)))
	}
	if !o.IPVersion.V4 && !o.IPVersion.V6 {
		errs = append(errs, bridge.Invalid("DROPLET_IP_VERSION", "no IP version selected: 4, 6 or both"))
	}
	if o.APIURL != "" {
		errs = append(errs, platform.CheckURL("DROPLET_API_URL", o.APIURL))
	}
	if o.MetadataURL != "" {
		errs = append(errs, platform.CheckURL("DROPLET_METADATA_URL", o.MetadataURL))
	}
	return errors.Join(errs...)
}

// New returns a provider. It fails on options that cannot work: no token,
// or anything Validate rejects.
func New(opts Options) (*Provider, error) {
	if opts.Token == "" {
		return nil, errors.New("no DigitalOcean API token: set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN, or a ..._FILE naming a file that holds it)")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Network == "" {
		opts.Network = Private
	}
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	if opts.MetadataURL == "" {
		opts.MetadataURL = DefaultMetadataURL
	}
	log := platform.Logger(opts.Logger)
	p := &Provider{Meter: platform.NewMeter(), opts: opts, log: log, skips: platform.NewSkips(log), pages: platform.NewPages[*page]()}
	base, api := p.Meter.Client(opts.HTTPClient)
	// Redirects stay on the API's host and bodies are capped: the bearer
	// transport adds the token beneath http.Client, so net/http's removal
	// of Authorization on a redirect to another host never applies.
	base = platform.Guard(base, maxMetadata)
	api = platform.Guard(api, platform.MaxBody(perPage, maxDroplet))
	apiURL, err := url.Parse(opts.APIURL)
	if err != nil {
		return nil, fmt.Errorf("api url: %w", err)
	}
	// Unchanged pages are recognised above the cap, so what is read and
	// hashed is bounded as the SDK's own reading is.
	api.Transport = &bearer{token: opts.Token, host: apiURL.Host, next: platform.SkipUnchanged(api.Transport)}
	client, err := godo.New(api, godo.SetBaseURL(opts.APIURL), godo.SetUserAgent("peerbridge"))
	if err != nil {
		return nil, fmt.Errorf("api client: %w", err)
	}
	// godo splices the filter into the query unescaped; escape it here.
	switch {
	case opts.Tag != "":
		p.list = func(ctx context.Context, o *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
			return client.Droplets.ListByTag(ctx, url.QueryEscape(opts.Tag), o)
		}
	case opts.Name != "":
		p.list = func(ctx context.Context, o *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
			return client.Droplets.ListByName(ctx, url.QueryEscape(opts.Name), o)
		}
	default:
		p.list = client.Droplets.List
	}
	if opts.ExcludeSelf {
		p.self = newSelfLookup(opts.MetadataURL, base, log)
	}
	return p, nil
}

// Peers lists every page and keeps the active droplets that pass the
// filters and have an address of the configured kind. Any failure fails
// the whole poll: a partial listing is never a peer set.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	pages, err := p.listAll(ctx)
	if err != nil {
		return nil, err
	}
	selfID := 0
	if p.self != nil {
		selfID = p.self.id(ctx)
	}
	self := strconv.Itoa(selfID)
	n := 0
	for _, pg := range pages {
		n += len(pg.peers)
	}
	// The peers are shared with the pages' memory: the loop normalizes
	// (deep-copies) a set before it keeps or changes anything of it.
	peers := make([]bridge.Peer, 0, n)
	for _, pg := range pages {
		for _, pr := range pg.peers {
			if selfID != 0 && pr.ID == self {
				continue
			}
			peers = append(peers, pr)
		}
		for _, s := range pg.skipped {
			if selfID == 0 || s.id != selfID {
				p.noAddress(s.id, s.name)
			}
		}
	}
	p.skips.PollDone()
	return peers, nil
}

func (p *Provider) matches(d godo.Droplet) bool {
	if p.opts.Region != "" && (d.Region == nil || !strings.EqualFold(d.Region.Slug, p.opts.Region)) {
		return false
	}
	return p.opts.VPC == "" || strings.EqualFold(d.VPCUUID, p.opts.VPC)
}

// addresses returns the droplet's addresses of the configured kind.
func (p *Provider) addresses(d godo.Droplet) []netip.Addr {
	if d.Networks == nil {
		return nil
	}
	var out []netip.Addr
	if p.opts.IPVersion.V4 {
		for _, n := range d.Networks.V4 {
			if Network(n.Type) == p.opts.Network {
				if a, err := netip.ParseAddr(n.IPAddress); err == nil && a.Unmap().Is4() {
					out = append(out, a.Unmap())
				}
			}
		}
	}
	if p.opts.IPVersion.V6 {
		for _, n := range d.Networks.V6 {
			if a, err := netip.ParseAddr(n.IPAddress); err == nil && a.Is6() && !a.Is4In6() {
				out = append(out, a)
			}
		}
	}
	return out
}

// noAddress counts a droplet skipped for want of an address, and logs it
// the first time only.
func (p *Provider) noAddress(id int, name string) {
	p.skips.Skip(strconv.Itoa(id), "droplet skipped: no address of the configured kind",
		"droplet_id", id, "droplet", name, "network", p.opts.Network,
		"ipv4", p.opts.IPVersion.V4, "ipv6", p.opts.IPVersion.V6)
}

func peer(d godo.Droplet, addrs []netip.Addr) bridge.Peer {
	attrs := map[string]string{"droplet_id": strconv.Itoa(d.ID), "name": d.Name}
	if d.Region != nil {
		attrs["region"] = d.Region.Slug
	}
	if size := cmp.Or(d.SizeSlug, sizeSlug(d.Size)); size != "" {
		attrs["size"] = size
	}
	if d.VPCUUID != "" {
		attrs["vpc_uuid"] = d.VPCUUID
	}
	if d.Image != nil {
		if img := cmp.Or(d.Image.Slug, d.Image.Name); img != "" {
			attrs["image"] = img
		}
	}
	if len(d.Tags) > 0 {
		tags := slices.Clone(d.Tags)
		slices.Sort(tags)
		attrs["tags"] = strings.Join(tags, ",")
	}
	return bridge.Peer{Name: d.Name, ID: strconv.Itoa(d.ID), Addrs: addrs, Attrs: attrs}
}

func sizeSlug(s *godo.Size) string {
	if s == nil {
		return ""
	}
	return s.Slug
}

// Skipped returns the number of droplets skipped so far for want of an
// address of the configured kind (counted on every poll).
func (p *Provider) Skipped() int64 { return p.skips.Total() }

// bearer adds the token to API requests, so that it lives in one place and
// never in a URL, and to requests for the configured API host only: the
// client's redirect policy keeps requests there, and this is the second
// lock on the same door.
type bearer struct {
	token string
	host  string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.EqualFold(r.URL.Host, b.host) {
		if r.Body != nil {
			r.Body.Close() // a RoundTripper closes the body, errors included
		}
		return nil, fmt.Errorf("%w: a request for %s, not the API host %s", platform.ErrRedirect, r.URL.Host, b.host)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func transport(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}
