// Package rancher provides the peers of a cluster from the Rancher 1.x
// metadata service: the containers of the bridge's own service, or of
// named services, with change detection by long-poll so that a change is
// published within about a second.
package rancher

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Defaults, as Rancher 1.x sets them up in every container.
const (
	DefaultURL     = "http://rancher-metadata"
	DefaultVersion = "latest"
	// MaxWait is the longest long-poll the metadata server allows, in
	// seconds.
	MaxWait = 120
)

// maxBody bounds an answer: a whole environment's services fit easily.
const maxBody = 32 << 20

// Options configure a provider.
type Options struct {
	// URL is the metadata service; empty means DefaultURL.
	URL string
	// Version is the API version path, e.g. latest or 2015-12-19.
	Version string
	// Services lists "stack/service" names; empty means the bridge's own
	// service (self/service).
	Services []string
	// AnyState also takes containers that are not running.
	AnyState bool
	// AnyHealth also takes containers whose health_state is neither
	// healthy nor null (no health check).
	AnyHealth bool
	// Wait is the long-poll's maxWait; 0 means 60s. At most MaxWait.
	Wait time.Duration
	// HTTPClient is used for every request; nil means one as http.DefaultClient
	// with per-request deadlines.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Provider reads a topology's containers.
type Provider struct {
	base     string // URL + "/" + version
	services []serviceName
	opts     Options
	client   *http.Client
	log      *slog.Logger

	skips   *platform.Skips
	wakeups atomic.Int64
}

type serviceName struct{ stack, name string }

func (s serviceName) String() string { return s.stack + "/" + s.name }

// ParseServices reads "stack/service,stack/service".
func ParseServices(s string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		stack, name, ok := strings.Cut(item, "/")
		if !ok || stack == "" || name == "" || strings.Contains(name, "/") {
			return nil, bridge.Invalid("RANCHER_SERVICES", "%q is not stack/service", item)
		}
		out = append(out, item)
	}
	return out, nil
}

// Validate checks the options, naming each setting that is wrong
// (bridge.SettingError), all at once. Empty URL and Version mean the
// defaults, and a zero Wait 60s.
func (o Options) Validate() error {
	var errs []error
	if o.URL != "" {
		errs = append(errs, platform.CheckURL("RANCHER_URL", o.URL))
	}
	// The version is a path segment: one rule, so that it cannot climb
	// out of the API or carry a query.
	if v := o.Version; v != "" && (strings.ContainsAny(v, "/?#%\\ ") || v == "." || v == "..") {
		errs = append(errs, bridge.Invalid("RANCHER_VERSION", "%q is not an API version such as latest or 2015-12-19", v))
	}
	if w := o.Wait; w < 0 || w > MaxWait*time.Second || w%time.Second != 0 {
		errs = append(errs, bridge.Invalid("RANCHER_WAIT", "%s must be whole seconds from 1s to %ds", w, MaxWait))
	}
	if _, err := ParseServices(strings.Join(o.Services, ",")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New returns a provider, or fails on what Validate rejects.
func New(opts Options) (*Provider, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.Wait == 0 {
		opts.Wait = 60 * time.Second
	}
	p := &Provider{
		base:   strings.TrimRight(opts.URL, "/") + "/" + opts.Version,
		opts:   opts,
		client: opts.HTTPClient,
		log:    platform.Logger(opts.Logger),
	}
	if p.client == nil {
		p.client = &http.Client{}
	}
	// GetJSON caps each answer already; the guard keeps requests on the
	// metadata service's host.
	p.client = platform.Guard(p.client, maxBody)
	p.skips = platform.NewSkips(p.log)
	names, _ := ParseServices(strings.Join(opts.Services, ",")) // checked by Validate
	for _, n := range names {
		stack, name, _ := strings.Cut(n, "/")
		p.services = append(p.services, serviceName{stack, name})
	}
	return p, nil
}

// service is the part of a metadata service object peerbridge reads.
// Containers are objects since 2015-12-19, names before.
type service struct {
	Name       string            `json:"name"`
	StackName  string            `json:"stack_name"`
	Containers []json.RawMessage `json:"containers"`
}

// container is the part of a metadata container object peerbridge reads.
type container struct {
	Name        string            `json:"name"`
	UUID        string            `json:"uuid"`
	PrimaryIP   string            `json:"primary_ip"`
	IPs         []string          `json:"ips"`
	State       string            `json:"state"`
	HealthState *string           `json:"health_state"`
	ServiceName string            `json:"service_name"`
	StackName   string            `json:"stack_name"`
	HostUUID    string            `json:"host_uuid"`
	Labels      map[string]string `json:"labels"`
}

// Peers reads the containers of the configured services and returns those
// that are peers. A missing service, an error or a malformed answer fails
// the poll.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	services, err := p.readServices(ctx)
	if err != nil {
		return nil, err
	}
	var byName map[string]container // for versions that list container names
	var peers []bridge.Peer
	for _, svc := range services {
		if svc.Containers == nil {
			// A service without containers lists "containers": []; an
			// answer without the key ({}) is malformed, never no peers.
			return nil, platform.Transient(fmt.Errorf("service %s/%s: malformed answer: no containers list", svc.StackName, svc.Name))
		}
		seen := map[string]bool{}
		for _, raw := range svc.Containers {
			var c container
			if len(raw) > 0 && raw[0] == '"' {
				if byName == nil {
					if byName, err = p.readContainers(ctx); err != nil {
						return nil, err
					}
				}
				var name string
				if err := json.Unmarshal(raw, &name); err != nil {
					return nil, platform.Transient(fmt.Errorf("service %s: container name: %w", svc.Name, err))
				}
				var ok bool
				if c, ok = byName[name]; !ok {
					continue // gone between the two reads: the next poll tells
				}
			} else if err := json.Unmarshal(raw, &c); err != nil {
				return nil, platform.Transient(fmt.Errorf("service %s: container: %w", svc.Name, err))
			}
			// The same container twice is no second peer.
			if key := cmp.Or(c.UUID, c.Name); key != "" {
				if seen[key] {
					return nil, platform.Inconsistent(fmt.Errorf("service %s: container %s listed twice", svc.Name, key))
				}
				seen[key] = true
			}
			if peer, ok := p.peer(c); ok {
				peers = append(peers, peer)
			}
		}
	}
	p.skips.PollDone()
	return peers, nil
}

// readServices returns the configured services: the own service, or the
// named ones from one read of all services.
func (p *Provider) readServices(ctx context.Context) ([]service, error) {
	if len(p.services) == 0 {
		var self service
		if err := p.get(ctx, "/self/service", &self); err != nil {
			return nil, fmt.Errorf("reading the own service: %w", err)
		}
		return []service{self}, nil
	}
	var all []service
	if err := p.get(ctx, "/services", &all); err != nil {
		return nil, fmt.Errorf("reading services: %w", err)
	}
	out := make([]service, 0, len(p.services))
	for _, want := range p.services {
		i := slices.IndexFunc(all, func(s service) bool { return s.StackName == want.stack && s.Name == want.name })
		if i < 0 {
			return nil, fmt.Errorf("service %s is not in the metadata", want)
		}
		out = append(out, all[i])
	}
	return out, nil
}

func (p *Provider) readContainers(ctx context.Context) (map[string]container, error) {
	var all []container
	if err := p.get(ctx, "/containers", &all); err != nil {
		return nil, fmt.Errorf("reading containers: %w", err)
	}
	byName := make(map[string]container, len(all))
	for _, c := range all {
		byName[c.Name] = c
	}
	return byName, nil
}

// peer applies the state and health rules and picks the address:
// primary_ip, else the first of ips.
func (p *Provider) peer(c container) (bridge.Peer, bool) {
	if !p.opts.AnyState && c.State != "running" {
		return bridge.Peer{}, false
	}
	if !p.opts.AnyHealth && c.HealthState != nil && *c.HealthState != "healthy" {
		return bridge.Peer{}, false
	}
	addr, ok := address(c)
	if !ok {
		p.noAddress(c)
		return bridge.Peer{}, false
	}
	attrs := map[string]string{
		"container": c.Name, "uuid": c.UUID, "service": c.ServiceName,
		"stack": c.StackName, "host_uuid": c.HostUUID,
	}
	for k, v := range c.Labels {
		// Rancher's own labels repeat what is above; users' labels are
		// what is worth carrying.
		if !strings.HasPrefix(k, "io.rancher.") {
			attrs["label_"+k] = v
		}
	}
	for k, v := range attrs {
		if v == "" {
			delete(attrs, k)
		}
	}
	id := c.UUID
	if id == "" {
		id = c.Name
	}
	return bridge.Peer{Name: c.Name, ID: id, Addrs: []netip.Addr{addr}, Attrs: attrs}, true
}

func address(c container) (netip.Addr, bool) {
	for _, s := range append([]string{c.PrimaryIP}, c.IPs...) {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func (p *Provider) noAddress(c container) {
	p.skips.Skip(c.UUID+c.Name, "container skipped: no primary_ip and no ips", "container", c.Name, "uuid", c.UUID)
}

// get reads path below the API version into v. The server labels its JSON
// text/plain, and answers in plain text without the Accept header.
func (p *Provider) get(ctx context.Context, path string, v any) error {
	return platform.GetJSON(ctx, p.client, platform.Rules{}, p.base+path, jsonHeader, maxBody, v)
}

var jsonHeader = http.Header{"Accept": {"application/json"}}

// Notify long-polls the metadata version and wakes the loop when it
// changes. Errors back off from 1s to 30s; the polling interval remains
// the fallback.
func (p *Provider) Notify(ctx context.Context, wake func()) {
	var backoff bridge.Retry
	current := ""
	for ctx.Err() == nil {
		next, err := p.version(ctx, current)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff.Failed()
			p.log.Debug("metadata long-poll failed", "error", err, "retry_in", wait)
			if !bridge.Sleep(ctx, wait) {
				return
			}
			continue
		}
		backoff.Succeeded()
		if current != "" && next != current {
			p.wakeups.Add(1)
			wake()
		}
		current = next
	}
}

// version returns the metadata version; given the current one, it waits
// until it changes or the long-poll times out (and returns it unchanged).
func (p *Provider) version(ctx context.Context, current string) (string, error) {
	u := p.base + "/version"
	timeout := 10 * time.Second
	if current != "" {
		// Both wait and value are required for the server to wait.
		q := url.Values{"wait": {"true"}, "value": {current}, "maxWait": {fmt.Sprint(int(p.opts.Wait / time.Second))}}
		u += "?" + q.Encode()
		timeout += p.opts.Wait
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var v string
	if err := platform.GetJSON(ctx, p.client, platform.Rules{}, u, jsonHeader, maxBody, &v); err != nil {
		return "", err
	}
	if v == "" {
		return "", platform.Transient(errors.New("/version: empty answer"))
	}
	return v, nil
}

// Wakeups returns how often the long-poll saw a change.
func (p *Provider) Wakeups() int64 { return p.wakeups.Load() }

// Skipped returns how many containers were skipped for want of an address.
func (p *Provider) Skipped() int64 { return p.skips.Total() }

var _ bridge.Notifier = (*Provider)(nil)
