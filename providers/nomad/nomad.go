// Package nomad provides the peers of a cluster from Nomad's own service
// catalog (services with provider = "nomad", Nomad 1.3 and later), which
// has no DNS interface of its own: every registration of one service
// name, in one namespace or in all the token may read, is a peer with its
// own port.
//
// It reads the Nomad CLI's variables (NOMAD_ADDR, NOMAD_TOKEN, ...) and
// talks through github.com/hashicorp/nomad/api. Between polls a blocking
// query (index and wait) watches the service, so that a new allocation is
// published within moments of registering; the poll interval remains the
// floor of full listings. Any error keeps the last set, and the token
// goes to the configured agent only, never into a log line or an error.
package nomad

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/nomad/api"
	"golang.org/x/net/http/httpguts"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:    "nomad",
	Summary: "Nomad native service registrations (provider = \"nomad\") of one service, with blocking queries",
	Metered: false,
	VendorVars: []string{
		"NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_TOKEN_FILE", "NOMAD_NAMESPACE", "NOMAD_REGION",
		"NOMAD_CACERT", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "NOMAD_TLS_SERVER_NAME",
	},
	Attrs: []string{"alloc_id", "job", "node_id", "datacenter", "namespace", "tags"},
}

// Env is the provider's environment spec, read under PEERBRIDGE_ (and per
// topology under PEERBRIDGE_<TOPOLOGY>_). The agent, token, region and
// TLS files are the Nomad CLI's own variables, which Configure reads.
type Env struct {
	NomadService   string `split_words:"true" desc:"nomad: the Nomad service name whose registrations are the peers (required)"`
	NomadTags      string `split_words:"true" desc:"nomad: comma-separated tags that a registration must all carry to be a peer"`
	NomadNamespace string `split_words:"true" desc:"nomad: the namespace to read (default NOMAD_NAMESPACE, else default), or * for every namespace the token may read"`
}

// DefaultAddress is the Nomad CLI's agent address when NOMAD_ADDR is unset.
const DefaultAddress = "http://127.0.0.1:4646"

// DefaultWait is how long a blocking query waits for a change. Shorter
// than Nomad's five minutes, so that a load balancer's idle timeout
// between peerbridge and the agent does not cut every query.
const DefaultWait = time.Minute

// MaxWait is the longest wait Nomad grants a blocking query.
const MaxWait = 10 * time.Minute

// lateness is how long past its wait (plus Nomad's wait/16 of jitter, well
// inside it) a blocking query may go unanswered before it is abandoned.
const lateness = 10 * time.Second

// maxBody bounds one answer, after decompression: a registration is a few
// hundred bytes, so this is tens of thousands of allocations.
const maxBody = 16 << 20

// Options configure a provider.
type Options struct {
	// Address is the agent's URL: http(s)://host:port, or
	// unix:///path/to/api.sock (a task's Task API socket). Empty means
	// DefaultAddress.
	Address string
	// Token is the ACL token's secret ID; empty when ACLs are off. Never
	// logged or put in an error.
	Token string
	// TokenFrom names where the token came from, for the start-up log.
	TokenFrom string
	// Region is sent with every request; empty means the agent's own.
	Region string
	// Namespace is the namespace to read, or "*" for every namespace the
	// token may read. Empty means "default".
	Namespace string
	// Service is the Nomad service name.
	Service string
	// Tags must all be on a registration for it to be a peer.
	Tags []string
	// CACert, ClientCert, ClientKey and TLSServerName configure TLS as
	// the Nomad CLI's variables of those names do (files in PEM).
	CACert, ClientCert, ClientKey, TLSServerName string
	// Wait is the blocking query's wait; 0 means DefaultWait.
	Wait   time.Duration
	Logger *slog.Logger
}

// Configure turns the variables into validated options: env, and the
// Nomad CLI's variables read from the process environment. Every problem
// is reported, joined: a bridge.SettingError for env's settings, a
// *bridge.VariableError for a NOMAD_ variable.
func Configure(env Env) (Options, error) {
	var errs []error
	vendor := func(name string, err error) { errs = append(errs, &bridge.VariableError{Variable: name, Err: err}) }
	opts := Options{
		Address:       cmp.Or(os.Getenv("NOMAD_ADDR"), DefaultAddress),
		Region:        os.Getenv("NOMAD_REGION"),
		Service:       strings.TrimSpace(env.NomadService),
		Tags:          splitTags(env.NomadTags),
		CACert:        os.Getenv("NOMAD_CACERT"),
		ClientCert:    os.Getenv("NOMAD_CLIENT_CERT"),
		ClientKey:     os.Getenv("NOMAD_CLIENT_KEY"),
		TLSServerName: os.Getenv("NOMAD_TLS_SERVER_NAME"),
	}
	if err := checkAddress(opts.Address); err != nil {
		vendor("NOMAD_ADDR", err)
	}
	if opts.Service == "" {
		errs = append(errs, bridge.Invalid("NOMAD_SERVICE", "required: the name of the Nomad service whose registrations are the peers"))
	} else if err := checkService(opts.Service); err != nil {
		errs = append(errs, bridge.Invalid("NOMAD_SERVICE", "%w", err))
	}
	if err := checkTags(opts.Tags); err != nil {
		errs = append(errs, bridge.Invalid("NOMAD_TAGS", "%w", err))
	}
	switch ns := strings.TrimSpace(env.NomadNamespace); {
	case ns != "":
		opts.Namespace = ns
		if err := checkNamespace(ns); err != nil {
			errs = append(errs, bridge.Invalid("NOMAD_NAMESPACE", "%w", err))
		}
	case os.Getenv("NOMAD_NAMESPACE") != "":
		opts.Namespace = os.Getenv("NOMAD_NAMESPACE")
		if err := checkNamespace(opts.Namespace); err != nil {
			vendor("NOMAD_NAMESPACE", err)
		}
	default:
		opts.Namespace = "default"
	}
	if err := checkRegion(opts.Region); err != nil {
		vendor("NOMAD_REGION", err)
	}
	switch {
	case os.Getenv("NOMAD_TOKEN") != "":
		opts.Token, opts.TokenFrom = strings.TrimSpace(os.Getenv("NOMAD_TOKEN")), "NOMAD_TOKEN"
	case os.Getenv("NOMAD_TOKEN_FILE") != "":
		opts.TokenFrom = "NOMAD_TOKEN_FILE"
		token, err := platform.ReadToken(os.Getenv("NOMAD_TOKEN_FILE"))
		if err != nil {
			vendor("NOMAD_TOKEN_FILE", err)
		}
		opts.Token = token
	}
	if opts.Token != "" && !httpguts.ValidHeaderFieldValue(opts.Token) {
		vendor(opts.TokenFrom, errors.New("the token holds characters a header cannot carry (a newline?)"))
	}
	for _, e := range checkTLS(opts) {
		vendor(e.Variable, e.Err)
	}
	return opts, errors.Join(errs...)
}

func splitTags(s string) []string {
	var out []string
	for t := range strings.SplitSeq(s, ",") {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Nomad's own rules: a service name is an RFC 1123 label (Nomad
// validates the interpolated name so); a namespace name is letters,
// digits and dashes, at most 128.
var (
	serviceRE   = regexp.MustCompile(`^(?i:[a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9])$`)
	namespaceRE = regexp.MustCompile(`^[a-zA-Z0-9-]{1,128}$`)
)

func checkService(s string) error {
	if !serviceRE.MatchString(s) {
		return fmt.Errorf("%q is no Nomad service name: letters, digits and dashes, at most 63, not starting or ending with a dash", s)
	}
	return nil
}

func checkNamespace(ns string) error {
	if ns != "*" && !namespaceRE.MatchString(ns) {
		return fmt.Errorf("%q is no Nomad namespace: letters, digits and dashes, or * for every namespace the token may read", ns)
	}
	return nil
}

func checkRegion(r string) error {
	if strings.ContainsFunc(r, func(c rune) bool { return c <= ' ' || c == '/' || c == '?' || c == '#' }) {
		return fmt.Errorf("%q is no Nomad region name", r)
	}
	return nil
}

func checkTags(tags []string) error {
	for _, t := range tags {
		if strings.ContainsFunc(t, func(c rune) bool { return c < ' ' }) {
			return fmt.Errorf("tag %q holds a control character", t)
		}
	}
	return nil
}

// checkAddress accepts what the Nomad CLI connects to: http(s) with a
// host, or a unix socket's path.
func checkAddress(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL such as %s", DefaultAddress)
	case u.Scheme == "unix":
		if u.EscapedPath() == "" {
			return fmt.Errorf("%s: no socket path; write unix:///path/to/api.sock", u.Redacted())
		}
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("%s is not an http(s) URL such as %s, nor unix:///path/to/api.sock", u.Redacted(), DefaultAddress)
	}
	return nil
}

// checkTLS loads the TLS files as the client will, so that a wrong path
// or a key that does not match its certificate is a start-up error named
// by its variable rather than a failure on every poll.
func checkTLS(o Options) []*bridge.VariableError {
	var errs []*bridge.VariableError
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		switch {
		case err != nil:
			errs = append(errs, &bridge.VariableError{Variable: "NOMAD_CACERT", Err: err})
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			errs = append(errs, &bridge.VariableError{Variable: "NOMAD_CACERT", Err: fmt.Errorf("%s holds no PEM certificate", o.CACert)})
		}
	}
	switch {
	case o.ClientCert != "" && o.ClientKey == "":
		errs = append(errs, &bridge.VariableError{Variable: "NOMAD_CLIENT_KEY", Err: errors.New("required with NOMAD_CLIENT_CERT")})
	case o.ClientCert == "" && o.ClientKey != "":
		errs = append(errs, &bridge.VariableError{Variable: "NOMAD_CLIENT_CERT", Err: errors.New("required with NOMAD_CLIENT_KEY")})
	case o.ClientCert != "":
		if _, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey); err != nil {
			// The error names the files, never the key's bytes.
			errs = append(errs, &bridge.VariableError{Variable: "NOMAD_CLIENT_CERT", Err: fmt.Errorf("loading the pair with NOMAD_CLIENT_KEY: %w", err)})
		}
	}
	return errs
}

// Validate reports every option that cannot work.
func (o Options) Validate() error {
	var errs []error
	if o.Service == "" {
		errs = append(errs, bridge.Invalid("NOMAD_SERVICE", "required"))
	} else if err := checkService(o.Service); err != nil {
		errs = append(errs, bridge.Invalid("NOMAD_SERVICE", "%w", err))
	}
	if o.Namespace != "" {
		if err := checkNamespace(o.Namespace); err != nil {
			errs = append(errs, bridge.Invalid("NOMAD_NAMESPACE", "%w", err))
		}
	}
	if err := checkTags(o.Tags); err != nil {
		errs = append(errs, bridge.Invalid("NOMAD_TAGS", "%w", err))
	}
	if o.Address != "" {
		if err := checkAddress(o.Address); err != nil {
			errs = append(errs, &bridge.VariableError{Variable: "NOMAD_ADDR", Err: err})
		}
	}
	if err := checkRegion(o.Region); err != nil {
		errs = append(errs, &bridge.VariableError{Variable: "NOMAD_REGION", Err: err})
	}
	if o.Token != "" && !httpguts.ValidHeaderFieldValue(o.Token) {
		errs = append(errs, &bridge.VariableError{Variable: cmp.Or(o.TokenFrom, "NOMAD_TOKEN"), Err: errors.New("the token holds characters a header cannot carry")})
	}
	if o.Wait < 0 || o.Wait > MaxWait {
		errs = append(errs, fmt.Errorf("blocking query wait %s: must be from 0 (the default, %s) to %s", o.Wait, DefaultWait, MaxWait))
	}
	for _, e := range checkTLS(o) {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// LogAttrs are the settings for the start-up log line: where the token
// came from, never the token.
func (o Options) LogAttrs() []any {
	addr := cmp.Or(o.Address, DefaultAddress)
	if u, err := url.Parse(addr); err == nil {
		addr = u.Redacted()
	}
	attrs := []any{
		"nomad_service", o.Service, "nomad_tags", strings.Join(o.Tags, ","),
		"nomad_namespace", cmp.Or(o.Namespace, "default"), "nomad_addr", addr,
		"nomad_region", o.Region, "token_from", cmp.Or(o.TokenFrom, "none"),
	}
	if o.CACert != "" {
		attrs = append(attrs, "nomad_cacert", o.CACert)
	}
	if o.ClientCert != "" {
		attrs = append(attrs, "nomad_client_cert", o.ClientCert)
	}
	if o.TLSServerName != "" {
		attrs = append(attrs, "nomad_tls_server_name", o.TLSServerName)
	}
	return attrs
}

// Provider reads a topology's registrations.
type Provider struct {
	// Meter counts requests (Requests, for metrics).
	*platform.Meter

	client *api.Client
	opts   Options
	log    *slog.Logger
	skips  *platform.Skips

	wakeups, blockFailures atomic.Int64
}

// New returns a provider. It fails on options that cannot work; it makes
// no request.
func New(opts Options) (*Provider, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.Address = cmp.Or(opts.Address, DefaultAddress)
	opts.Namespace = cmp.Or(opts.Namespace, "default")
	opts.Wait = cmp.Or(opts.Wait, DefaultWait)
	log := platform.Logger(opts.Logger)
	p := &Provider{Meter: platform.NewMeter(), opts: opts, log: log, skips: platform.NewSkips(log)}
	hc, err := p.httpClient()
	if err != nil {
		return nil, err
	}
	p.client, err = api.NewClient(&api.Config{
		Address:    opts.Address,
		Region:     opts.Region,
		SecretID:   opts.Token,
		HttpClient: hc,
	})
	if err != nil {
		return nil, p.scrub(fmt.Errorf("nomad client: %w", err))
	}
	return p, nil
}

// httpClient is the client every request goes through: TLS from the
// options, redirects kept to the configured agent (the api client sets
// X-Nomad-Token, which Go's client would forward to any host a redirect
// names), a unix socket dialled when the address is one, and every answer
// capped at maxBody after decompression. No client timeout: blocking
// queries last minutes, so each request carries its own deadline.
func (p *Provider) httpClient() (*http.Client, error) {
	u, _ := url.Parse(p.opts.Address) // checked by Validate
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if u.Scheme == "unix" {
		path := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		tr.Proxy = nil
	}
	hc := &http.Client{Transport: tr}
	err := api.ConfigureTLS(hc, &api.TLSConfig{
		CACert: p.opts.CACert, ClientCert: p.opts.ClientCert, ClientKey: p.opts.ClientKey,
		TLSServerName: p.opts.TLSServerName,
	})
	if err != nil {
		return nil, fmt.Errorf("nomad TLS: %w", err)
	}
	hc.Transport = p.Meter.Transport(platform.LimitBodies(plainEncoding{tr}, maxBody))
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		err := platform.SameOrigin(req, via)
		if errors.Is(err, platform.ErrRedirect) {
			return fmt.Errorf("refusing a redirect to another host (%s): the Nomad token goes to the configured agent only: %w", req.URL.Host, err)
		}
		return err
	}
	return hc, nil
}

// plainEncoding lets the transport decompress (the api client asks for
// gzip itself, and would then inflate without bound), so that the cap
// (platform.LimitBodies) counts the bytes decoded.
type plainEncoding struct{ next http.RoundTripper }

func (t plainEncoding) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del("Accept-Encoding")
	return t.next.RoundTrip(r)
}

// Wakeups returns how often a blocking query saw a change.
func (p *Provider) Wakeups() int64 { return p.wakeups.Load() }

// BlockingFailures returns how many blocking queries failed or were
// abandoned (unanswered 10 s past their wait).
func (p *Provider) BlockingFailures() int64 { return p.blockFailures.Load() }

// Skipped returns how many registrations were skipped for want of a
// usable address or port (counted on every poll).
func (p *Provider) Skipped() int64 { return p.skips.Total() }

// Peers lists the service's registrations (in every namespace the token
// may read, for "*") and returns those carrying every tag. Any failure,
// in any namespace, fails the whole poll.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	namespaces := []string{p.opts.Namespace}
	if p.opts.Namespace == api.AllNamespacesNamespace {
		// Nomad answers /v1/service/<name>?namespace=* with an empty list;
		// the catalog says where the service is registered.
		var err error
		if namespaces, _, err = p.namespaces(ctx, 0); err != nil {
			return nil, err
		}
	}
	var peers []bridge.Peer
	seen := map[string]string{} // registration id -> namespace
	for _, ns := range namespaces {
		regs, _, err := p.client.Services().Get(p.opts.Service, p.query(ctx, ns, 0))
		if err != nil {
			return nil, p.fail(fmt.Sprintf("reading service %s in namespace %s", p.opts.Service, ns), err)
		}
		for _, r := range regs {
			if r == nil || r.ServiceName != p.opts.Service {
				continue
			}
			if other, dup := seen[r.ID]; dup {
				return nil, fmt.Errorf("registration %s listed twice (namespaces %s and %s): %w", r.ID, other, ns, bridge.ErrInconsistentListing)
			}
			seen[r.ID] = ns
			if peer, ok := p.peer(r, ns); ok {
				peers = append(peers, peer)
			}
		}
	}
	p.skips.PollDone()
	return peers, nil
}

// namespaces reads the catalog of every namespace the token may read and
// returns those where the service is registered with every tag (the
// catalog's tags are the union of its registrations'), and the catalog's
// index. With index, it is a blocking query.
func (p *Provider) namespaces(ctx context.Context, index uint64) ([]string, uint64, error) {
	stubs, meta, err := p.client.Services().List(p.query(ctx, api.AllNamespacesNamespace, index))
	if err != nil {
		return nil, 0, p.fail("listing services in every namespace", err)
	}
	var out []string
	for _, stub := range stubs {
		if stub == nil {
			continue
		}
		for _, s := range stub.Services {
			if s != nil && s.ServiceName == p.opts.Service && hasAll(s.Tags, p.opts.Tags) && !slices.Contains(out, stub.Namespace) {
				out = append(out, stub.Namespace)
			}
		}
	}
	slices.Sort(out)
	return out, meta.LastIndex, nil
}

func (p *Provider) query(ctx context.Context, ns string, index uint64) *api.QueryOptions {
	q := &api.QueryOptions{Namespace: ns}
	if index > 0 {
		q.WaitIndex, q.WaitTime = index, p.opts.Wait
	}
	return q.WithContext(ctx)
}

func hasAll(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// peer turns a registration into a peer, or skips it: tags missing
// (quietly: a filter), or an address or port that DNS cannot carry
// (logged once: a registration with address = "db.example" in its
// service block).
func (p *Provider) peer(r *api.ServiceRegistration, ns string) (bridge.Peer, bool) {
	if !hasAll(r.Tags, p.opts.Tags) {
		return bridge.Peer{}, false
	}
	addr, err := netip.ParseAddr(r.Address)
	if err != nil || addr.Zone() != "" || addr.IsUnspecified() {
		p.skips.Skip(r.ID, "registration skipped: its address is no IP address", "id", r.ID, "alloc_id", r.AllocID, "address", r.Address)
		return bridge.Peer{}, false
	}
	if r.Port < 0 || r.Port > 65535 {
		p.skips.Skip(r.ID, "registration skipped: its port is out of range", "id", r.ID, "alloc_id", r.AllocID, "port", r.Port)
		return bridge.Peer{}, false
	}
	name := r.AllocID
	if len(name) > 8 {
		// An allocation id is a UUID: its first 8 characters tell
		// allocations apart, as Nomad's own CLI shows them.
		name = name[:8]
	}
	if name == "" {
		name = r.ID
	}
	attrs := map[string]string{
		"alloc_id": r.AllocID, "job": r.JobID, "node_id": r.NodeID, "datacenter": r.Datacenter,
		"namespace": cmp.Or(r.Namespace, ns), "tags": strings.Join(r.Tags, ","),
	}
	for k, v := range attrs {
		if v == "" {
			delete(attrs, k)
		}
	}
	return bridge.Peer{Name: name, ID: r.ID, Addrs: []netip.Addr{addr.Unmap()}, Port: uint16(r.Port), Attrs: attrs}, true
}

// fail classifies an api client error for the loop and takes every trace
// of the token out of it. The client quotes a whole error body; it is
// shortened here.
func (p *Provider) fail(what string, err error) error {
	var resp api.UnexpectedResponseError
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return p.scrub(fmt.Errorf("%s: %w", what, err))
	case errors.As(err, &resp) && resp.HasStatusCode():
		code := resp.StatusCode()
		e := fmt.Errorf("%s: HTTP %d: %s", what, code, platform.Quote([]byte(resp.Body())))
		switch {
		case code == http.StatusForbidden || code == http.StatusUnauthorized:
			// Nomad says "Permission denied" for a token without read-job
			// in the namespace, "ACL token not found" for an unknown one.
			return p.scrub(fmt.Errorf("%w (check %s and its policy: read-job in namespace %s): %w",
				bridge.ErrCredentials, cmp.Or(p.opts.TokenFrom, "NOMAD_TOKEN"), p.opts.Namespace, e))
		case code == http.StatusTooManyRequests:
			return p.scrub(&platform.RateLimited{Err: e})
		case code == http.StatusRequestTimeout || code >= 500:
			return p.scrub(platform.Transient(e))
		default:
			return p.scrub(e)
		}
	default:
		// Connection errors and bodies that do not decode (or exceed
		// maxBody) pass: the next poll may well succeed.
		return p.scrub(platform.Transient(fmt.Errorf("%s: %w", what, err)))
	}
}

func (p *Provider) scrub(err error) error { return platform.Scrub(err, p.opts.Token) }

var (
	_ bridge.Provider = (*Provider)(nil)
	_ bridge.Notifier = (*Provider)(nil)
)
