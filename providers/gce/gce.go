// Package gce provides the peers of a cluster from Google Compute Engine's
// instances.list and instances.aggregatedList: one poller for the whole
// cluster, instead of every node holding credentials and calling the
// Compute API against the project's shared quota.
//
// Everything Google-specific is Google's own code: Application Default
// Credentials from golang.org/x/oauth2/google (a key file named by
// GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, or the metadata
// server, whose host GCE_METADATA_HOST overrides) and the API's types and
// calls from google.golang.org/api/compute/v1. This package chooses the
// calls, reads every page, picks each instance's address, and sorts the
// API's errors for the reconcile loop: running instances only, every page
// or none, rate limits backed off, any error keeps the last set, and the
// access token never in a log line or an error.
package gce

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/compute/v1"
	"google.golang.org/api/option"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:    "gce",
	Summary: "Google Compute Engine instances (instances.list per zone, or instances.aggregatedList), with Application Default Credentials",
	// Compute reports no quota in its answers: nothing to pace by.
	Metered:    false,
	VendorVars: []string{"GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"},
	Attrs:      []string{"id", "zone", "machine_type", "network", "tags", "label_*"},
}

// Env is the provider's environment spec, read under PEERBRIDGE_ (and per
// topology under PEERBRIDGE_<TOPOLOGY>_). Credentials are Google's own
// variables (GOOGLE_APPLICATION_CREDENTIALS, GCE_METADATA_HOST), which
// Configure reads through Application Default Credentials.
type Env struct {
	GceProject string `split_words:"true" desc:"the project whose instances are listed; default: the project of the credentials ADC found (the key's, else the metadata server's)"`
	GceZones   string `split_words:"true" desc:"zones to list, e.g. europe-west1-b,europe-west1-c (instances.list in each); empty: every zone through instances.aggregatedList"`
	GceFilter  string `split_words:"true" desc:"Compute's own filter expression, sent as filter, e.g. labels.app = myapp; only RUNNING instances are ever published"`
	GceAddress string `split_words:"true" default:"private" desc:"private (the first interface's networkIP), public (its access config's natIP) or ipv6 (its ipv6Address, else its external IPv6)"`
	GceApiUrl  string `split_words:"true" desc:"Compute API base URL up to and including /compute/v1/ (tests, Private Service Connect); empty: Google's"`
}

// DefaultAPIURL is Google's Compute API.
const DefaultAPIURL = "https://compute.googleapis.com/compute/v1/"

const (
	// pageSize is the most instances.list and aggregatedList return a
	// page: fewer requests per poll against the project's quota.
	pageSize = 500
	// maxPages stops a listing whose next page tokens never end.
	maxPages = 10_000
	// maxInstanceBytes bounds one instance's JSON. Instances carry their
	// metadata (startup scripts, up to 512 KiB in all) in listings, so a
	// typical one is a few KiB and an extreme one far more; the cap is
	// for an answer that never ends, not for a large project.
	maxInstanceBytes = 256 << 10
	// startTimeout bounds finding the credentials at start (the metadata
	// server's project, a token endpoint): a source that cannot answer
	// fails the start instead of hanging it.
	startTimeout = 30 * time.Second
)

// maxBody bounds one answer: a full page of large instances (125 MiB).
// A variable for tests.
var maxBody int64 = pageSize * maxInstanceBytes

// Address is the kind of address published for an instance.
type Address string

// The addresses an instance may have, from its first network interface.
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
	case "":
		return Private, nil
	}
	return "", bridge.Invalid("GCE_ADDRESS", "%q is not private, public or ipv6", s)
}

// Options configure a provider.
type Options struct {
	// Project is the project whose instances are listed.
	Project string
	// Zones are listed one by one with instances.list; empty means every
	// zone through instances.aggregatedList.
	Zones []string
	// Filter is Compute's filter expression, sent as is.
	Filter string
	// Address is the address published; empty means Private.
	Address Address
	// APIURL is the API's base URL, up to and including /compute/v1/;
	// empty means DefaultAPIURL.
	APIURL string
	// TokenSource issues the access tokens sent to the API (Configure
	// takes it from Application Default Credentials). Tokens are never
	// logged or put in an error.
	TokenSource oauth2.TokenSource
	// CredentialsSource says where the credentials came from, for the
	// start-up log: a file's path, the metadata server's host, never a
	// secret.
	CredentialsSource string
	// HTTPClient is the base client for API requests; nil means one with
	// a 30 s timeout. Its transport must not add credentials of its own.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Validate reports every option that cannot work, as bridge.SettingErrors
// named by variable suffix.
func (o Options) Validate() error { return o.validate(true) }

// validate checks the options; without needProject a missing project is
// no error (Configure found no credentials to take it from, and says so).
func (o Options) validate(needProject bool) error {
	var errs []error
	if o.Project == "" {
		if needProject {
			errs = append(errs, bridge.Invalid("GCE_PROJECT", "no project: set it, or use credentials that name one (a service-account key, or the metadata server on GCE)"))
		}
	} else if !validProject(o.Project) {
		errs = append(errs, bridge.Invalid("GCE_PROJECT", "%q is no project ID (6 to 30 lowercase letters, digits and hyphens)", o.Project))
	}
	for _, z := range o.Zones {
		if !validZone(z) {
			errs = append(errs, bridge.Invalid("GCE_ZONES", "%q is no zone name such as europe-west1-b", z))
		}
	}
	if o.Address != "" {
		if _, err := ParseAddress(string(o.Address)); err != nil {
			errs = append(errs, err)
		}
	}
	if o.APIURL != "" {
		if err := platform.CheckURL("GCE_API_URL", o.APIURL); err != nil {
			errs = append(errs, err)
		} else if !strings.HasSuffix(o.APIURL, "/") {
			errs = append(errs, bridge.Invalid("GCE_API_URL", "%q must end in / (the base up to and including /compute/v1/)", o.APIURL))
		}
	}
	return errors.Join(errs...)
}

// validProject accepts project IDs (and the domain-scoped
// example.com:project form), which is all the API takes in a path.
func validProject(p string) bool {
	_, id, _ := strings.Cut(p, ":")
	if id == "" {
		id = p
	}
	return len(id) >= 6 && len(id) <= 30 && strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" &&
		!strings.HasSuffix(id, "-") && !strings.ContainsAny(p, "/?#% ")
}

// validZone accepts zone names: lowercase letters, digits and hyphens.
func validZone(z string) bool {
	return z != "" && len(z) <= 63 && strings.Trim(z, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

// ParseZones reads a comma list of zones, ignoring spaces and empty items.
func ParseZones(s string) []string {
	var out []string
	for z := range strings.SplitSeq(s, ",") {
		if z = strings.ToLower(strings.TrimSpace(z)); z != "" && !slices.Contains(out, z) {
			out = append(out, z)
		}
	}
	return out
}

// Configure turns the variables into validated options, finding the
// credentials through Application Default Credentials. Problems are
// bridge.SettingErrors, or *bridge.VariableErrors for Google's own
// variables; all of them, joined.
func Configure(env Env) (Options, error) {
	opts := Options{
		Project: strings.TrimSpace(env.GceProject),
		Zones:   ParseZones(env.GceZones),
		Filter:  strings.TrimSpace(env.GceFilter),
		APIURL:  strings.TrimSpace(env.GceApiUrl),
	}
	var errs []error
	addr, err := ParseAddress(env.GceAddress)
	if err != nil {
		errs = append(errs, err)
	}
	opts.Address = addr
	creds, source, err := FindCredentials()
	if err != nil {
		errs = append(errs, err)
	} else {
		opts.TokenSource, opts.CredentialsSource = creds.TokenSource, source
		opts.Project = cmp.Or(opts.Project, creds.ProjectID)
	}
	// Without credentials there is no project to default to: only the
	// credentials' error then, not a second one for the project.
	errs = append(errs, opts.validate(err == nil))
	if err := errors.Join(errs...); err != nil {
		return Options{}, err
	}
	return opts, nil
}

// LogAttrs are the settings for the start-up log line: where the
// credentials came from, never a token or a key.
func (o Options) LogAttrs() []any {
	zones := "all (aggregatedList)"
	if len(o.Zones) > 0 {
		zones = strings.Join(o.Zones, ",")
	}
	api := cmp.Or(o.APIURL, DefaultAPIURL)
	if u, err := url.Parse(api); err == nil {
		api = u.Redacted() // a proxy's password in the URL
	}
	return []any{
		"gce_project", o.Project, "gce_zones", zones, "gce_filter", o.Filter,
		"gce_address", cmp.Or(o.Address, Private), "gce_api_url", api,
		"gce_credentials", o.CredentialsSource,
	}
}

// Provider lists a topology's instances.
type Provider struct {
	// meter counts requests (Compute reports no rate limit to read).
	meter   *platform.Meter
	service *compute.Service
	opts    Options
	log     *slog.Logger
	skips   *platform.Skips
	tokens  *seenTokens

	// zonePages and aggregatedPages remember the last complete listing's
	// pages; decoded counts the pages decoded (not found unchanged), for
	// tests; lastCount, the ids of the last listing, sizes the next one's
	// duplicate check.
	zonePages, aggregatedPages *platform.Pages[[]scoped]
	decoded                    atomic.Int64
	lastCount                  atomic.Int64
}

// New returns a provider. It fails on options that cannot work; it makes
// no request (the first token is fetched with the first listing).
func New(opts Options) (*Provider, error) {
	if opts.TokenSource == nil {
		return nil, &bridge.VariableError{Variable: "GOOGLE_APPLICATION_CREDENTIALS", Err: errors.New("no credentials (Configure finds them through Application Default Credentials)")}
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.Address = cmp.Or(opts.Address, Private)
	opts.APIURL = cmp.Or(opts.APIURL, DefaultAPIURL)
	base, err := url.Parse(opts.APIURL)
	if err != nil {
		return nil, bridge.Invalid("GCE_API_URL", "%q: %v", opts.APIURL, err)
	}
	log := platform.Logger(opts.Logger)
	p := &Provider{
		meter: platform.NewMeter(), opts: opts, log: log, skips: platform.NewSkips(log),
		tokens:          &seenTokens{src: opts.TokenSource},
		zonePages:       platform.NewShapedPages[[]scoped](zoneShape),
		aggregatedPages: platform.NewShapedPages[[]scoped](aggregatedShape),
	}
	client := p.httpClient(base)
	p.service, err = compute.NewService(context.Background(),
		option.WithHTTPClient(client),
		option.WithEndpoint(opts.APIURL),
		// The SDK's debug logging (GOOGLE_SDK_GO_LOGGING_LEVEL) would
		// write every answer to stderr; the provider logs what matters.
		option.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return nil, fmt.Errorf("the Compute client: %w", err)
	}
	p.service.UserAgent = "peerbridge"
	return p, nil
}

// Requests returns the API requests made so far (token requests are not
// counted: they go to the token endpoint or metadata server, once an
// hour).
func (p *Provider) Requests() int64 { return p.meter.Requests() }

// Skipped returns the number of running instances skipped so far for want
// of an address of the configured kind (counted on every poll).
func (p *Provider) Skipped() int64 { return p.skips.Total() }
