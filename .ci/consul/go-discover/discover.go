// Package discover has the API of github.com/hashicorp/go-discover that
// Consul's agent calls for cloud auto-join ("retry_join" entries of the form
// "provider=aws tag_key=..."), with no provider built in.
//
// The real module's providers bring the AWS EC2, Google Compute, Azure,
// SoftLayer, vSphere and other SDKs: about a quarter of the source Consul
// compiles, and minutes of a cold CI run on two cores. The test agents are
// single dev agents on loopback that join nothing, so a "provider=" entry
// here gets an error that says why instead of the cloud's addresses.
package discover

import (
	"fmt"
	"log"
	"sort"
	"strings"
)

// Provider looks up the addresses of nodes in one cloud.
type Provider interface {
	Addrs(args map[string]string, l *log.Logger) ([]string, error)
	Help() string
}

// ProviderWithUserAgent is a Provider that sends a User-Agent.
type ProviderWithUserAgent interface {
	SetUserAgent(s string)
}

// Providers is empty: no cloud is built in (see the package comment).
var Providers = map[string]Provider{}

// Discover resolves "provider=NAME key=value ..." with its providers.
type Discover struct {
	providers map[string]Provider
	userAgent string
}

// Option sets up a Discover.
type Option func(*Discover) error

// New returns a Discover with the given options applied.
func New(opts ...Option) (*Discover, error) {
	d := &Discover{providers: Providers}
	for _, opt := range opts {
		if err := opt(d); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// WithUserAgent sets the User-Agent given to providers that send one.
func WithUserAgent(agent string) Option {
	return func(d *Discover) error { d.userAgent = agent; return nil }
}

// WithProviders replaces the providers.
func WithProviders(m map[string]Provider) Option {
	return func(d *Discover) error { d.providers = m; return nil }
}

// Names lists the providers' names, sorted.
func (d *Discover) Names() []string {
	names := make([]string, 0, len(d.providers))
	for name := range d.providers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Help lists the providers' help texts.
func (d *Discover) Help() string {
	var b strings.Builder
	b.WriteString("Cloud auto-join providers in this build: " + strings.Join(d.Names(), ", ") + "\n")
	for _, name := range d.Names() {
		b.WriteString(d.providers[name].Help())
	}
	return b.String()
}

// Addrs resolves cfg, "provider=NAME key=value ...", with the named
// provider. Values are taken as written (the real module URL-decodes them
// and allows quoting; no provider here reads them).
func (d *Discover) Addrs(cfg string, l *log.Logger) ([]string, error) {
	args := map[string]string{}
	for _, field := range strings.Fields(cfg) {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("discover: %q is not key=value", field)
		}
		args[k] = v
	}
	name := args["provider"]
	if name == "" {
		return nil, fmt.Errorf("discover: no provider")
	}
	p := d.providers[name]
	if p == nil {
		return nil, fmt.Errorf("discover: provider %q is not built into this Consul (peerbridge's test build has no cloud auto-join)", name)
	}
	if ua, ok := p.(ProviderWithUserAgent); ok {
		ua.SetUserAgent(d.userAgent)
	}
	return p.Addrs(args, l)
}
