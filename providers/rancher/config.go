package rancher

import (
	"errors"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:    "rancher",
	Summary: "Rancher 1.x containers, through the metadata service",
	Attrs:   []string{"container", "uuid", "service", "stack", "host_uuid", "label_*"},
}

// Env is the provider's environment spec (see the command's registry).
type Env struct {
	RancherUrl       string        `split_words:"true" default:"http://rancher-metadata" desc:"Rancher 1.x metadata service"`
	RancherVersion   string        `split_words:"true" default:"latest" desc:"metadata API version, e.g. 2015-12-19"`
	RancherServices  string        `split_words:"true" desc:"stack/service,...; empty: the bridge's own service"`
	RancherAnyState  bool          `split_words:"true" desc:"also take containers that are not running"`
	RancherAnyHealth bool          `split_words:"true" desc:"also take containers whose health_state is not healthy"`
	RancherWait      time.Duration `split_words:"true" default:"60s" desc:"long-poll wait for metadata changes, at most 120s"`
}

// Configure turns the variables into validated options. Where Options
// take an empty value as the default, a variable set empty is an error.
func Configure(env Env) (Options, error) {
	opts := Options{
		URL: env.RancherUrl, Version: env.RancherVersion, Wait: env.RancherWait,
		AnyState: env.RancherAnyState, AnyHealth: env.RancherAnyHealth,
	}
	services, err := ParseServices(env.RancherServices)
	opts.Services = services
	err = errors.Join(err, opts.Validate())
	if env.RancherWait == 0 {
		err = errors.Join(err, bridge.Invalid("RANCHER_WAIT", "0s must be whole seconds from 1s to %ds", MaxWait))
	}
	if env.RancherVersion == "" {
		err = errors.Join(err, bridge.Invalid("RANCHER_VERSION", `"" is not an API version such as latest or 2015-12-19`))
	}
	return opts, err
}

// LogAttrs are the settings for the start-up log line.
func (o Options) LogAttrs() []any {
	return []any{
		"rancher_url", platform.RedactURL(o.URL), "rancher_version", o.Version, "rancher_services", o.Services,
		"rancher_any_state", o.AnyState, "rancher_any_health", o.AnyHealth, "rancher_wait", o.Wait,
	}
}
