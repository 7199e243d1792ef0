package droplet

import (
	"errors"

	"github.com/kelseyhightower/envconfig"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:    "droplet",
	Summary: "DigitalOcean Droplets, through the API",
	Metered: true,
	VendorVars: []string{
		"DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "DIGITALOCEAN_TOKEN_FILE", "DIGITALOCEAN_ACCESS_TOKEN_FILE",
	},
	Attrs: []string{"droplet_id", "name", "region", "size", "vpc_uuid", "image", "tags"},
}

// Env is the provider's environment spec (see the command's registry).
// Api and Url are spelt so because split_words needs the case change to
// make DROPLET_API_URL.
type Env struct {
	DropletTag         string `split_words:"true" desc:"droplet filter: tag, sent to the API as tag_name"`
	DropletName        string `split_words:"true" desc:"droplet filter: exact name, sent as name (not with a tag)"`
	DropletRegion      string `split_words:"true" desc:"droplet filter: region slug, e.g. nyc3"`
	DropletVPC         string `split_words:"true" desc:"droplet filter: VPC UUID"`
	DropletNetwork     string `split_words:"true" default:"private" desc:"private or public IPv4 (DigitalOcean's IPv6 is always public)"`
	DropletIPVersion   string `split_words:"true" default:"4" desc:"4, 6 or both (A and AAAA)"`
	DropletExcludeSelf bool   `split_words:"true" desc:"leave out the droplet peerbridge runs on (found through the metadata service)"`
	DropletApiUrl      string `split_words:"true" default:"https://api.digitalocean.com/" desc:"DigitalOcean API base URL"`
	DropletMetadataUrl string `split_words:"true" default:"http://169.254.169.254/metadata/v1/" desc:"droplet metadata service"`
}

// TokenPrefix is the prefix of TokenEnv's variables.
const TokenPrefix = "DIGITALOCEAN"

// TokenEnv is DigitalOcean's own variables, as doctl and Terraform read
// them (prefix DIGITALOCEAN). The token is never logged.
type TokenEnv struct {
	Token           string `split_words:"true" desc:"DigitalOcean API token, for the droplet provider"`
	AccessToken     string `split_words:"true" desc:"the same, under the name some tools use"`
	TokenFile       string `split_words:"true" desc:"a file that holds the token (e.g. a mounted secret)"`
	AccessTokenFile string `split_words:"true" desc:"the same"`
}

// Configure turns the variables into validated options, reading the
// token from the first of DIGITALOCEAN_TOKEN, DIGITALOCEAN_ACCESS_TOKEN
// and their _FILE forms that is set. It returns every problem at once.
func Configure(env Env) (Options, error) {
	opts := Options{
		Tag: env.DropletTag, Name: env.DropletName, Region: env.DropletRegion, VPC: env.DropletVPC,
		ExcludeSelf: env.DropletExcludeSelf, APIURL: env.DropletApiUrl, MetadataURL: env.DropletMetadataUrl,
	}
	var errs []error
	var err error
	if opts.Network, err = ParseNetwork(env.DropletNetwork); err != nil {
		errs = append(errs, err)
		opts.Network = Private
	}
	if opts.IPVersion, err = ParseIPVersion(env.DropletIPVersion); err != nil {
		errs = append(errs, err)
		opts.IPVersion = IPVersion{V4: true}
	}
	errs = append(errs, opts.Validate())
	if opts.Token, opts.TokenFrom, err = readToken(); err != nil {
		errs = append(errs, &bridge.VariableError{Variable: opts.TokenFrom, Err: err})
	}
	return opts, errors.Join(errs...)
}

// readToken returns the token and the variable it came from, or which
// to set.
func readToken() (token, from string, err error) {
	from = "DIGITALOCEAN_TOKEN"
	var env TokenEnv
	if err := envconfig.Process(TokenPrefix, &env); err != nil {
		return "", from, err
	}
	switch {
	case env.Token != "":
		return env.Token, from, nil
	case env.AccessToken != "":
		return env.AccessToken, "DIGITALOCEAN_ACCESS_TOKEN", nil
	case env.TokenFile != "":
		token, err = platform.ReadToken(env.TokenFile)
		return token, "DIGITALOCEAN_TOKEN_FILE", err
	case env.AccessTokenFile != "":
		token, err = platform.ReadToken(env.AccessTokenFile)
		return token, "DIGITALOCEAN_ACCESS_TOKEN_FILE", err
	}
	return "", from, errors.New("required: set it (or DIGITALOCEAN_ACCESS_TOKEN, or DIGITALOCEAN_TOKEN_FILE naming a file that holds it)")
}

// LogAttrs are the settings for the start-up log line: where the token
// came from, never the token.
func (o Options) LogAttrs() []any {
	return []any{
		"droplet_tag", o.Tag, "droplet_name", o.Name, "droplet_region", o.Region, "droplet_vpc", o.VPC,
		"droplet_network", o.Network, "droplet_ip_version", o.IPVersion.String(),
		"droplet_exclude_self", o.ExcludeSelf, "droplet_api_url", platform.RedactURL(o.APIURL), "token_from", o.TokenFrom,
	}
}
