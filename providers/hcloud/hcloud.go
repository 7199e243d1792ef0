// Package hcloud provides the peers of a cluster from the Hetzner Cloud
// API's servers: one listing for the whole cluster, instead of every node
// polling the API with a token of its own (Hetzner allows 3,600 requests
// an hour per project).
//
// It follows the droplet provider's contract through the shared platform
// plumbing: running servers only, every page or none, rate limits
// honoured, any error keeps the last set, and the token never in a log
// line or an error.
package hcloud

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/net/http/httpguts"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// DefaultAPIURL is Hetzner's Cloud API.
const DefaultAPIURL = hcloud.Endpoint

// perPage is the largest page the API serves: fewer requests per poll.
const perPage = 50

// maxPages stops a listing whose next_page never ends.
const maxPages = 10_000

// maxServer is generous for one server of a listing: a few KiB of JSON,
// its labels included.
const maxServer = 64 << 10

// rules: Hetzner refills its budget one request a second, and its
// RateLimit-Reset is when the whole hour's budget is back; waiting for it
// after a 429 would stall a topology for up to an hour.
var rules = platform.Rules{TokenVariable: "HCLOUD_TOKEN", WaitForReset: false}

// IPVersion selects A, AAAA or both; ParseIPVersion reads "4", "6" or
// "both". (The platform's, shared with the other providers.)
type IPVersion = platform.IPVersion

// ParseIPVersion reads "4", "6" or "both".
func ParseIPVersion(s string) (IPVersion, error) { return platform.ParseIPVersion(s) }

// Options configure a provider.
type Options struct {
	// Token is the API token. The SDK sends it as a bearer token; it is
	// never logged or put in an error.
	Token string
	// TokenFrom names the variable the token came from, for the log.
	TokenFrom string
	// APIURL is the API's base URL; empty means DefaultAPIURL.
	APIURL string
	// LabelSelector (Hetzner's syntax) and Name filter on the server.
	LabelSelector, Name string
	// Location filters on the client by the server's location (fsn1);
	// empty matches all.
	Location string
	// Network, when set, is a private network's name or numeric ID: the
	// server's address in it is published. Empty means public addresses.
	Network   string
	IPVersion IPVersion
	// HTTPClient is the base client; nil means one with a 30 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Validate reports every option that cannot work, as bridge.SettingErrors
// named by variable suffix.
func (o Options) Validate() error {
	var errs []error
	if !o.IPVersion.V4 && !o.IPVersion.V6 {
		errs = append(errs, bridge.Invalid("HCLOUD_IP_VERSION", "no IP version selected"))
	}
	if o.Network != "" && o.IPVersion.V6 {
		// Hetzner's private networks carry IPv4 only: a v6 address "in the
		// network" does not exist, and mixing in public v6 would publish
		// addresses the operator did not ask for.
		errs = append(errs, bridge.Invalid("HCLOUD_IP_VERSION",
			"%s with a private network: Hetzner's private networks are IPv4 only; use 4, or leave HCLOUD_NETWORK empty for public IPv6", o.IPVersion))
	}
	if isID(o.Network) {
		if id, err := strconv.ParseInt(o.Network, 10, 64); err != nil || id == 0 {
			errs = append(errs, bridge.Invalid("HCLOUD_NETWORK", "%q is no network ID", o.Network))
		}
	}
	if o.APIURL != "" {
		errs = append(errs, platform.CheckURL("HCLOUD_API_URL", o.APIURL))
	}
	return errors.Join(errs...)
}

// Provider lists a topology's servers.
type Provider struct {
	// Meter counts requests and keeps the reported rate limit.
	*platform.Meter

	client *hcloud.Client
	opts   Options
	log    *slog.Logger
	skips  *platform.Skips

	// netID is the private network's ID, given or resolved from its name
	// once; netSeen is whether a listing since has had a server in it.
	// Polls of one topology do not overlap, but check and metrics may
	// read concurrently, hence the lock.
	mu      sync.Mutex
	netID   int64
	netSeen bool

	// pages remembers the last complete listing's pages; decoded counts
	// the pages decoded (not found unchanged), for tests; lastCount, the
	// ids of the last listing, sizes the next one's duplicate check.
	pages     *platform.Pages[[]*hcloud.Server]
	decoded   atomic.Int64
	lastCount atomic.Int64
}

// New returns a provider. It fails on options that cannot work; it makes
// no request.
func New(opts Options) (*Provider, error) {
	if opts.Token == "" {
		return nil, errors.New("no Hetzner Cloud API token: set HCLOUD_TOKEN (or HCLOUD_TOKEN_FILE naming a file that holds it)")
	}
	if !httpguts.ValidHeaderFieldValue(opts.Token) {
		return nil, errors.New("the Hetzner Cloud API token holds characters a header cannot carry (a newline?)")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.APIURL = cmp.Or(opts.APIURL, DefaultAPIURL)
	log := platform.Logger(opts.Logger)
	p := &Provider{Meter: platform.NewMeter(), opts: opts, log: log, skips: platform.NewSkips(log), pages: platform.NewPages[[]*hcloud.Server]()}
	_, api := p.Meter.Client(opts.HTTPClient)
	// Redirects stay on the API's host, and no answer is read without
	// bound.
	api = platform.Guard(api, platform.MaxBody(perPage, maxServer))
	// Unchanged pages are recognised above the cap, so what is read and
	// hashed is bounded as the SDK's own reading is.
	api.Transport = platform.SkipUnchanged(api.Transport)
	p.client = hcloud.NewClient(
		hcloud.WithEndpoint(opts.APIURL),
		hcloud.WithToken(opts.Token),
		hcloud.WithHTTPClient(api),
		hcloud.WithApplication("peerbridge", ""),
		// The SDK would retry 429s and gateway errors itself, up to five
		// times with waits of up to a minute: a poll could then spend its
		// whole timeout asleep and request more than its pages. The loop's
		// backoff (at most five intervals) decides instead.
		hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0}),
	)
	if isID(opts.Network) {
		// As the hcloud CLI reads a network argument: digits are an ID.
		p.netID, _ = strconv.ParseInt(opts.Network, 10, 64)
	}
	return p, nil
}

// Skipped returns the number of servers skipped so far for want of an
// address of the configured kind (counted on every poll).
func (p *Provider) Skipped() int64 { return p.skips.Total() }

// keep reports whether a listed server is a peer: running, and in the
// configured location.
func (p *Provider) keep(s *hcloud.Server) bool {
	if s.Status != hcloud.ServerStatusRunning {
		return false
	}
	return p.opts.Location == "" || (s.Location != nil && strings.EqualFold(s.Location.Name, p.opts.Location))
}

// addresses returns the server's addresses of the configured kind: its IP
// in the private network netID, or its public IPv4 and the ::1 of its
// public IPv6 /64.
func (p *Provider) addresses(s *hcloud.Server, netID int64) []netip.Addr {
	var out []netip.Addr
	if p.opts.Network != "" {
		for _, n := range s.PrivateNet {
			if n.Network != nil && n.Network.ID == netID {
				if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap().Is4() {
					out = append(out, a.Unmap())
				}
			}
		}
		return out
	}
	if p.opts.IPVersion.V4 && !s.PublicNet.IPv4.IsUnspecified() {
		if a, ok := netip.AddrFromSlice(s.PublicNet.IPv4.IP); ok && a.Unmap().Is4() {
			out = append(out, a.Unmap())
		}
	}
	if p.opts.IPVersion.V6 && s.PublicNet.IPv6.Network != nil {
		// The API gives the server's /64 (2001:db8:1234::/64); the server
		// itself answers on its ::1, as Hetzner configures it.
		if a, ok := netip.AddrFromSlice(s.PublicNet.IPv6.Network.IP); ok && a.Is6() && !a.Is4In6() && !a.IsUnspecified() {
			out = append(out, netip.PrefixFrom(a, 64).Masked().Addr().Next())
		}
	}
	return out
}

func peer(s *hcloud.Server, addrs []netip.Addr) bridge.Peer {
	id := strconv.FormatInt(s.ID, 10)
	attrs := map[string]string{"server_id": id, "name": s.Name}
	if s.Location != nil && s.Location.Name != "" {
		attrs["location"] = s.Location.Name
	}
	if s.ServerType != nil && s.ServerType.Name != "" {
		attrs["server_type"] = s.ServerType.Name
	}
	// One attribute, as droplets' tags: Consul meta keys cannot hold the
	// dots and slashes of label keys such as app.example.com/role, and
	// label values cannot hold commas or equals signs.
	if len(s.Labels) > 0 {
		kv := make([]string, 0, len(s.Labels))
		for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
			kv = append(kv, k+"="+s.Labels[k])
		}
		attrs["labels"] = strings.Join(kv, ",")
	}
	return bridge.Peer{Name: s.Name, ID: id, Addrs: addrs, Attrs: attrs}
}

// describe names the configured address kind for the skip log.
func (p *Provider) describe() string {
	if p.opts.Network != "" {
		return fmt.Sprintf("private network %s", p.opts.Network)
	}
	return "public IPv" + strings.ReplaceAll(p.opts.IPVersion.String(), "both", "4 or IPv6")
}
