// Package ec2 provides the peers of a cluster from AWS EC2's
// DescribeInstances: one poller for the whole cluster, instead of every
// node calling the API with credentials of its own against the account's
// shared request limit.
//
// Everything AWS-specific is the SDK's (github.com/aws/aws-sdk-go-v2):
// the default chain of credentials, region and endpoint, SigV4 signing,
// the Query protocol and EC2's XML. This package chooses the filters,
// reads every page, picks each instance's address and name, and sorts
// the SDK's errors for the reconcile loop.
package ec2

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/awsapi"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

const (
	// pageSize is the most DescribeInstances returns a page: fewer
	// requests per poll, and fewer against the account's limit.
	pageSize = 1000
	// maxPages stops a listing whose next tokens never end.
	maxPages = 10_000
	// DefaultLabelTag names a peer by its Name tag, as the console does.
	DefaultLabelTag = "Name"
)

// Address is the kind of address published for an instance.
type Address string

// The addresses an instance may have.
const (
	Private Address = "private"
	Public  Address = "public"
	IPv6    Address = "ipv6"
)

// ParseAddress reads "private", "public" or "ipv6".
func ParseAddress(s string) (Address, error) {
	switch a := Address(strings.ToLower(strings.TrimSpace(s))); a {
	case Private, Public, IPv6:
		return a, nil
	}
	return "", bridge.Invalid("EC2_ADDRESS", "%q is not private, public or ipv6", s)
}

// Options configure a provider.
type Options struct {
	// Filters are sent with every DescribeInstances call; ParseFilters
	// makes them, instance-state-name=running included.
	Filters []types.Filter
	// Address is the address published; empty means Private.
	Address Address
	// LabelTag is the tag whose value names a peer; empty means
	// DefaultLabelTag. An instance without it is named by its id.
	LabelTag string
	// AWS is the SDK's configuration; nil means LoadConfig's.
	AWS    *aws.Config
	Logger *slog.Logger
}

// ErrNoRegion is LoadConfig's error when the chain names no region.
var ErrNoRegion = awsapi.ErrNoRegion

// LoadConfig reads the SDK's default chain: region, credentials and
// endpoint from AWS_REGION, AWS_ACCESS_KEY_ID, AWS_PROFILE and the shared
// files, web identity, ECS, the instance metadata service,
// AWS_ENDPOINT_URL_EC2 and AWS_ENDPOINT_URL. It reads local files only;
// credentials are fetched when first needed. A missing region is an
// error naming AWS_REGION.
func LoadConfig(ctx context.Context) (aws.Config, error) { return awsapi.LoadConfig(ctx) }

// Provider lists a topology's instances.
type Provider struct {
	client   ec2.DescribeInstancesAPIClient
	creds    aws.CredentialsProvider
	filters  []types.Filter
	address  Address
	labelTag string
	log      *slog.Logger
	skips    *platform.Skips
	requests atomic.Int64

	// pages remembers the last complete listing's pages; decoded counts
	// the pages decoded (not found unchanged), for tests; lastCount, the
	// ids of the last listing, sizes the next one's duplicate check.
	pages     *platform.Pages[*page]
	decoded   atomic.Int64
	lastCount atomic.Int64

	mu      sync.Mutex
	secrets []string // of every credential seen, to scrub from errors
}

// StartTimeout bounds New's fetching of the credentials (IMDS, STS, the
// ECS endpoint): a chain that cannot answer fails the start instead of
// hanging it.
const StartTimeout = 30 * time.Second

// New is NewContext bounded by StartTimeout.
func New(opts Options) (*Provider, error) {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	return NewContext(ctx, opts)
}

// NewContext returns a provider. It fetches the credentials once, so
// that a chain that finds none fails at start, and logs where they came
// from (never the secret key or session token).
func NewContext(ctx context.Context, opts Options) (*Provider, error) {
	log := platform.Logger(opts.Logger)
	if opts.Address == "" {
		opts.Address = Private
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(opts.Filters) == 0 {
		opts.Filters, _ = ParseFilters("")
	}
	var cfg aws.Config
	if opts.AWS != nil {
		cfg = opts.AWS.Copy()
	} else {
		var err error
		if cfg, err = LoadConfig(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Credentials == nil {
		return nil, errors.New("no AWS credentials provider")
	}
	p := &Provider{
		creds:    cfg.Credentials,
		filters:  opts.Filters,
		address:  opts.Address,
		labelTag: cmp.Or(opts.LabelTag, DefaultLabelTag),
		log:      log,
		skips:    platform.NewSkips(log),
		pages:    platform.NewShapedPages[*page](pageShape),
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "+
			"or run with a web identity, ECS task or instance role: %w", platform.Scrub(err, p.noteSecrets(creds)...))
	}
	p.noteSecrets(creds)
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		// The loop is the retryer: one attempt per page, so requests
		// per poll are pages, a throttled account gets no extra calls
		// (the loop backs off instead), and no SDK backoff can outlast
		// the poll's timeout. A failed page fails the poll; the last
		// set stays until the next one.
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
		// Request logging would write signed headers to stderr.
		o.ClientLogMode = 0
		// Unchanged pages are recognised above the cap, so what is read
		// and hashed is bounded as the SDK's own reading is.
		o.HTTPClient = awsapi.SkipUnchanged(awsapi.HTTPClient(o.HTTPClient, &p.requests, maxBody))
	})
	p.client = client
	attrs := []any{"region", cfg.Region, "credentials_source", creds.Source, "filters", FormatFilters(p.filters),
		"address", p.address, "label_tag", p.labelTag}
	if creds.CanExpire {
		attrs = append(attrs, "credentials_expire", creds.Expires)
	}
	if ep := client.Options().BaseEndpoint; ep != nil {
		attrs = append(attrs, "endpoint", *ep)
	}
	log.Info("AWS credentials found", attrs...)
	return p, nil
}

// noteSecrets remembers the secret parts of creds, so that errors can be
// scrubbed of them even after a rotation, and returns all it knows.
func (p *Provider) noteSecrets(creds aws.Credentials) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range []string{creds.SecretAccessKey, creds.SessionToken} {
		if s != "" && !slices.Contains(p.secrets, s) {
			p.secrets = append(p.secrets, s)
		}
	}
	return slices.Clone(p.secrets)
}

// scrub removes every known secret from err's text. The credentials
// cache answers without a request unless they expired.
func (p *Provider) scrub(ctx context.Context, err error) error {
	creds, _ := p.creds.Retrieve(ctx)
	return platform.Scrub(err, p.noteSecrets(creds)...)
}

// Peers lists every page and keeps the running instances that have an
// address of the configured kind. Any failure fails the whole poll: a
// partial listing is never a peer set.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	pages, err := p.listAll(ctx)
	if err != nil {
		return nil, p.scrub(ctx, err)
	}
	n := 0
	for _, pg := range pages {
		n += len(pg.peers)
	}
	// The peers are shared with the pages' memory: the loop normalizes
	// (deep-copies) a set before it keeps or changes anything of it.
	peers := make([]bridge.Peer, 0, n)
	for _, pg := range pages {
		peers = append(peers, pg.peers...)
		for _, s := range pg.skipped {
			p.skips.Skip(s.id, "instance skipped: no address of the configured kind",
				"instance_id", s.id, "name", s.name, "address", p.address)
		}
	}
	p.skips.PollDone()
	return peers, nil
}

// listAll follows NextToken from the first page until there is none. An
// instance listed twice (the listing moved between pages, or pages that
// repeat each other; a reservation's instances may span pages, so only
// instances count) is a listing whose pages disagree
// (bridge.ErrInconsistentListing), never two peers. An answer without a
// reservationSet (another API's XML) is malformed, never zero instances:
// the SDK gives an empty set as an empty slice, a missing one as nil.
//
// A page whose answer is the same as the same page's of the last complete
// listing (its requestId and nextToken aside) is not decoded again
// (platform.Pages): the SDK decodes a stub with an empty reservationSet
// and the answer's token, and the page's instances are what it gave last
// time. The checks above run on every page alike.
func (p *Provider) listAll(ctx context.Context) ([]*page, error) {
	pager := ec2.NewDescribeInstancesPaginator(p.client, &ec2.DescribeInstancesInput{
		Filters: p.filters, MaxResults: aws.Int32(pageSize),
	})
	var all []*page
	seen := make(map[string]int, p.lastCount.Load()) // instance id: the page it was on
	tokens := map[string]bool{}
	listing := p.pages.Begin()
	for n := 1; pager.HasMorePages(); n++ {
		if n > maxPages {
			return nil, fmt.Errorf("describing instances: more than %d pages", maxPages)
		}
		pctx, fetch := listing.Request(ctx, strconv.Itoa(n))
		out, err := pager.NextPage(pctx)
		if err != nil {
			return nil, fmt.Errorf("describing instances page %d: %w", n, classify(err))
		}
		if out.Reservations == nil {
			return nil, platform.Transient(fmt.Errorf("describing instances page %d: malformed answer: no reservationSet", n))
		}
		pg, ok := fetch.Unchanged()
		if !ok {
			p.decoded.Add(1)
			pg = p.derive(out.Reservations)
			fetch.Keep(pg, nil)
		}
		for _, id := range pg.ids {
			if first, dup := seen[id]; dup {
				return nil, platform.Inconsistent(fmt.Errorf("describing instances page %d: instance %s was on page %d already", n, id, first))
			}
			seen[id] = n
		}
		all = append(all, pg)
		if t := aws.ToString(out.NextToken); t != "" {
			// A token seen before would loop until the poll times out.
			if tokens[t] {
				return nil, platform.Transient(fmt.Errorf("describing instances page %d: nextToken repeats an earlier page's", n))
			}
			tokens[t] = true
		}
	}
	listing.Done()
	p.lastCount.Store(int64(len(seen)))
	return all, nil
}

// addressOf returns the instance's address of the configured kind.
func (p *Provider) addressOf(in types.Instance) (netip.Addr, bool) {
	var raw string
	switch p.address {
	case Public:
		raw = aws.ToString(in.PublicIpAddress)
	case IPv6:
		raw = ipv6Of(in)
	default:
		raw = aws.ToString(in.PrivateIpAddress)
	}
	a, err := netip.ParseAddr(raw)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if (p.address == IPv6) != a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

// ipv6Of is the instance's IPv6 address: its primary one when it has
// one, else the first of its first network interface (by device index)
// that has any. The instance-level field is only set for a primary IPv6
// address; most instances carry theirs on the interfaces only.
func ipv6Of(in types.Instance) string {
	if a := aws.ToString(in.Ipv6Address); a != "" {
		return a
	}
	nics := slices.Clone(in.NetworkInterfaces)
	slices.SortStableFunc(nics, func(a, b types.InstanceNetworkInterface) int {
		return cmp.Compare(deviceIndex(a), deviceIndex(b))
	})
	for _, n := range nics {
		var first string
		for _, a := range n.Ipv6Addresses {
			if aws.ToBool(a.IsPrimaryIpv6) && aws.ToString(a.Ipv6Address) != "" {
				return aws.ToString(a.Ipv6Address)
			}
			first = cmp.Or(first, aws.ToString(a.Ipv6Address))
		}
		if first != "" {
			return first
		}
	}
	return ""
}

func deviceIndex(n types.InstanceNetworkInterface) int64 {
	if n.Attachment == nil || n.Attachment.DeviceIndex == nil {
		return 1 << 40 // unknown: after every attached one
	}
	return int64(aws.ToInt32(n.Attachment.NetworkCardIndex))<<32 | int64(*n.Attachment.DeviceIndex)
}

// peer names an instance by its label tag, else by its id; instances
// that share a name still get distinct labels from bridge.Labels, as
// their ids differ.
func (p *Provider) peer(in types.Instance, addr netip.Addr) bridge.Peer {
	id := aws.ToString(in.InstanceId)
	attrs := map[string]string{"instance_id": id, "instance_type": string(in.InstanceType)}
	if in.Placement != nil && aws.ToString(in.Placement.AvailabilityZone) != "" {
		attrs["availability_zone"] = aws.ToString(in.Placement.AvailabilityZone)
	}
	if v := aws.ToString(in.VpcId); v != "" {
		attrs["vpc_id"] = v
	}
	if tags := formatTags(in.Tags); tags != "" {
		attrs["tags"] = tags
	}
	name := cmp.Or(strings.TrimSpace(tag(in.Tags, p.labelTag)), id)
	return bridge.Peer{Name: name, ID: id, Addrs: []netip.Addr{addr}, Attrs: attrs}
}

func tag(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// formatTags is the tags attribute: key=value, sorted by key and comma
// separated, as the droplet provider's tags are a sorted list.
func formatTags(tags []types.Tag) string {
	parts := make([]string, 0, len(tags))
	for _, t := range tags {
		parts = append(parts, aws.ToString(t.Key)+"="+aws.ToString(t.Value))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Requests returns the number of DescribeInstances requests made so far:
// one per page.
func (p *Provider) Requests() int64 { return p.requests.Load() }

// Skipped returns the number of instances skipped so far for want of an
// address of the configured kind (counted on every poll).
func (p *Provider) Skipped() int64 { return p.skips.Total() }

// maxInstance is generous for one instance of DescribeInstances' XML:
// EC2's example is 6 KiB, and 50 tags of the longest keys and values
// add 21 KiB. Tighter than the JSON APIs' allowance because a page has
// 1,000 of them and the SDK's XML decoder reads a few MB a second.
const maxInstance = 32 << 10

// maxBody caps one DescribeInstances answer: a page of pageSize
// instances, generously.
var maxBody = platform.MaxBody(pageSize, maxInstance)
