package main

import (
	"cmp"
	"errors"
	"log/slog"

	"github.com/kelseyhightower/envconfig"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/hcloud"
)

// HcloudEnv is the hcloud CLI's own variables (prefix HCLOUD), so that a
// machine set up for the CLI needs nothing more. The token is never
// logged.
type HcloudEnv struct {
	Token     string `split_words:"true" desc:"Hetzner Cloud API token (read only suffices), for the hcloud provider"`
	TokenFile string `split_words:"true" desc:"a file that holds the token (e.g. a mounted secret)"`
	Endpoint  string `split_words:"true" desc:"the API's base URL, as the hcloud CLI reads it; PEERBRIDGE_HCLOUD_API_URL wins over it"`
}

// hcloudSource reads a topology's hcloud settings. The endpoint is
// PEERBRIDGE_HCLOUD_API_URL when set (it can differ per topology), else
// HCLOUD_ENDPOINT (the CLI's, one for the process), else Hetzner's.
func hcloudSource(env TopologyEnv) source {
	var errs []error
	var cli HcloudEnv
	if err := envconfig.Process("HCLOUD", &cli); err != nil {
		errs = append(errs, &variableError{"HCLOUD_TOKEN", err})
	}
	opts := hcloud.Options{
		LabelSelector: env.HcloudLabelSelector, Name: env.HcloudName, Location: env.HcloudLocation,
		Network: env.HcloudNetwork, APIURL: cmp.Or(env.HcloudApiUrl, cli.Endpoint),
	}
	tokenFrom := "HCLOUD_TOKEN"
	var err error
	switch {
	case cli.Token != "":
		opts.Token = cli.Token
	case cli.TokenFile != "":
		tokenFrom = "HCLOUD_TOKEN_FILE"
		if opts.Token, err = readToken(cli.TokenFile); err != nil {
			errs = append(errs, &variableError{tokenFrom, err})
		}
	default:
		errs = append(errs, &variableError{tokenFrom, errors.New("required: set it, or HCLOUD_TOKEN_FILE naming a file that holds it")})
	}
	if opts.IPVersion, err = hcloud.ParseIPVersion(env.HcloudIPVersion); err != nil {
		errs = append(errs, &bridge.SettingError{Setting: "HCLOUD_IP_VERSION", Err: err})
	} else {
		for _, se := range bridge.SettingErrors(opts.Validate()) {
			if se.Setting == "HCLOUD_API_URL" && env.HcloudApiUrl == "" {
				errs = append(errs, &variableError{"HCLOUD_ENDPOINT", se.Err})
				continue
			}
			errs = append(errs, se)
		}
	}
	return source{
		err: errors.Join(errs...),
		build: func(log *slog.Logger) (bridge.Provider, error) {
			opts.Logger = log
			return hcloud.New(opts)
		},
		details: []any{
			"hcloud_label_selector", opts.LabelSelector, "hcloud_name", opts.Name, "hcloud_location", opts.Location,
			"hcloud_network", opts.Network, "hcloud_ip_version", opts.IPVersion.String(),
			"hcloud_api_url", redactURL(cmp.Or(opts.APIURL, hcloud.DefaultAPIURL)), "token_from", tokenFrom,
		},
	}
}
