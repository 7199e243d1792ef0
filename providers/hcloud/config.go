package hcloud

import (
	"cmp"
	"errors"

	"github.com/kelseyhightower/envconfig"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:       "hcloud",
	Summary:    "Hetzner Cloud servers, through the API",
	Metered:    true,
	VendorVars: []string{"HCLOUD_TOKEN", "HCLOUD_TOKEN_FILE", "HCLOUD_ENDPOINT"},
	Attrs:      []string{"server_id", "name", "location", "server_type", "labels"},
}

// Env is the provider's environment spec (see the command's registry).
type Env struct {
	HcloudLabelSelector string `split_words:"true" desc:"hcloud filter: label selector in Hetzner's syntax (app=web,env!=dev), sent as label_selector"`
	HcloudName          string `split_words:"true" desc:"hcloud filter: exact server name, sent as name"`
	HcloudLocation      string `split_words:"true" desc:"hcloud filter: the server's location, e.g. fsn1"`
	HcloudNetwork       string `split_words:"true" desc:"a private network's name or ID: publish the servers' addresses in it; empty: public addresses"`
	HcloudIPVersion     string `split_words:"true" default:"4" desc:"4, 6 or both (A and AAAA); IPv6 is the ::1 of the server's public /64, so not with a private network"`
	HcloudApiUrl        string `split_words:"true" desc:"Hetzner Cloud API base URL; empty: HCLOUD_ENDPOINT if set, else https://api.hetzner.cloud/v1"`
}

// CLIPrefix is the prefix of CLIEnv's variables.
const CLIPrefix = "HCLOUD"

// CLIEnv is the hcloud CLI's own variables (prefix HCLOUD), so that a
// machine set up for the CLI needs nothing more. The token is never
// logged.
type CLIEnv struct {
	Token     string `split_words:"true" desc:"Hetzner Cloud API token (read only suffices), for the hcloud provider"`
	TokenFile string `split_words:"true" desc:"a file that holds the token (e.g. a mounted secret)"`
	Endpoint  string `split_words:"true" desc:"the API's base URL, as the hcloud CLI reads it; HCLOUD_API_URL wins over it"`
}

// Configure turns the variables into validated options. The endpoint is
// HCLOUD_API_URL when set (it can differ per topology), else
// HCLOUD_ENDPOINT (the CLI's, one for the process), else Hetzner's.
func Configure(env Env) (Options, error) {
	var errs []error
	var cli CLIEnv
	if err := envconfig.Process(CLIPrefix, &cli); err != nil {
		errs = append(errs, &bridge.VariableError{Variable: "HCLOUD_TOKEN", Err: err})
	}
	opts := Options{
		LabelSelector: env.HcloudLabelSelector, Name: env.HcloudName, Location: env.HcloudLocation,
		Network: env.HcloudNetwork, APIURL: cmp.Or(env.HcloudApiUrl, cli.Endpoint), TokenFrom: "HCLOUD_TOKEN",
	}
	var err error
	switch {
	case cli.Token != "":
		opts.Token = cli.Token
	case cli.TokenFile != "":
		opts.TokenFrom = "HCLOUD_TOKEN_FILE"
		if opts.Token, err = platform.ReadToken(cli.TokenFile); err != nil {
			errs = append(errs, &bridge.VariableError{Variable: opts.TokenFrom, Err: err})
		}
	default:
		errs = append(errs, &bridge.VariableError{Variable: opts.TokenFrom, Err: errors.New("required: set it, or HCLOUD_TOKEN_FILE naming a file that holds it")})
	}
	if opts.IPVersion, err = ParseIPVersion(env.HcloudIPVersion); err != nil {
		errs = append(errs, &bridge.SettingError{Setting: "HCLOUD_IP_VERSION", Err: err})
	} else {
		for _, se := range bridge.SettingErrors(opts.Validate()) {
			if se.Setting == "HCLOUD_API_URL" && env.HcloudApiUrl == "" {
				errs = append(errs, &bridge.VariableError{Variable: "HCLOUD_ENDPOINT", Err: se.Err})
				continue
			}
			errs = append(errs, se)
		}
	}
	return opts, errors.Join(errs...)
}

// LogAttrs are the settings for the start-up log line: where the token
// came from, never the token.
func (o Options) LogAttrs() []any {
	return []any{
		"hcloud_label_selector", o.LabelSelector, "hcloud_name", o.Name, "hcloud_location", o.Location,
		"hcloud_network", o.Network, "hcloud_ip_version", o.IPVersion.String(),
		"hcloud_api_url", platform.RedactURL(cmp.Or(o.APIURL, DefaultAPIURL)), "token_from", o.TokenFrom,
	}
}
