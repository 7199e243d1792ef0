package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/dnsserver"
	"github.com/peerbridge/peerbridge/providers/droplet"
	"github.com/peerbridge/peerbridge/providers/health"
	"github.com/peerbridge/peerbridge/providers/rancher"
	"github.com/peerbridge/peerbridge/providers/static"
)

const envPrefix = "PEERBRIDGE"

// Field names, not envconfig tags, give the variable names (split_words):
// with a tag envconfig would also read the bare name (PORT, LOG_LEVEL)
// from the environment, which containers often set for other programs.

// GlobalEnv is what the whole process reads once. The spec types are
// exported because envconfig reaches embedded structs by reflection.
type GlobalEnv struct {
	Topologies     []string      `split_words:"true" desc:"several topologies, e.g. web,worker; each reads PEERBRIDGE_<NAME>_<VARIABLE>, the plain variable being the default"`
	DNSDomain      string        `split_words:"true" default:"peers.internal." desc:"the zone served"`
	DNSAddr        string        `split_words:"true" default:":8653" desc:"DNS listen address, UDP and TCP"`
	DNSTtl         ttl           `split_words:"true" default:"5s" desc:"TTL of every record: seconds or a Go duration"`
	DNSNegativeTTL ttl           `split_words:"true" default:"5s" desc:"TTL of NXDOMAIN and NODATA answers"`
	DNSMaxTCPConns int           `split_words:"true" default:"512" desc:"most DNS TCP connections open at once; at the cap the longest idle one is closed (1 to 1048576)"`
	HTTPAddr       string        `split_words:"true" default:":8654" desc:"listen address of /healthz, /readyz, /metrics, /status and /sd/prometheus; empty turns HTTP off"`
	Consul         *bool         `split_words:"true" desc:"publish to Consul's catalog (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...); default: true when CONSUL_HTTP_ADDR is set"`
	Owner          string        `split_words:"true" default:"peerbridge" desc:"owner id stamped on every Consul entry; only entries with it are changed"`
	ConsulTags     []string      `split_words:"true" desc:"tags added to every service registered in Consul"`
	HA             bool          `split_words:"true" desc:"several replicas with one owner elect a leader through Consul; followers serve DNS from the catalog"`
	HAKeyPrefix    string        `split_words:"true" default:"peerbridge/leader" desc:"Consul KV prefix of the leader lock; the key is <prefix>/<owner>"`
	HACheckTTL     time.Duration `split_words:"true" default:"3s" desc:"TTL of each replica's check on its Consul agent, bound to its session: a dead leader's session ends this long after its last renewal (1s to 1h)"`
	HALockDelay    time.Duration `split_words:"true" default:"3s" desc:"how long nobody may take the lock after a leader's session ended (1s to 60s); failover takes about CHECK_TTL + LOCK_DELAY"`
	HADeadline     time.Duration `envconfig:"HA_RENEW_DEADLINE" default:"2s" desc:"a leader that could not confirm its lock for this long stops polling and writing; at least 500ms below LOCK_DELAY, so it stops before another can start"`
	LogLevel       string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat      string        `split_words:"true" default:"text" desc:"text or json"`

	// Zone transfers, parsed and checked by dnsserver (checkTransfer).
	DNSTransferAllow string `split_words:"true" desc:"IPs and CIDRs allowed to transfer the zone (AXFR, IXFR over TCP); empty: transfers are REFUSED"`
	DNSNotify        string `split_words:"true" desc:"host:port,... sent a NOTIFY at start and whenever the serial changes"`
	DNSTsigKey       string `split_words:"true" desc:"name:algorithm:base64-secret (e.g. xfr:hmac-sha256:...): transfers must then be TSIG-signed with it, and NOTIFYs are signed"`
	DNSNs            string `split_words:"true" desc:"the apex NS names, comma-separated (default ns.<zone>); name=addr adds a glue A or AAAA record"`
}

// TopologyEnv is what every topology reads, per topology in the
// multi-topology form.
type TopologyEnv struct {
	Service      string       `split_words:"true" desc:"the service name, a DNS label (single topology; else the topology name)"`
	Provider     string       `split_words:"true" default:"static" desc:"where peers come from: static, droplet, rancher, hcloud or ec2"`
	Port         uint16       `split_words:"true" desc:"the peers' port, for SRV records"`
	PortName     string       `split_words:"true" desc:"names the port: adds _<name>._tcp SRV records"`
	NodeBasename string       `split_words:"true" desc:"Erlang node basename: adds TXT node=<basename>@<ip>"`
	PollInterval pollInterval `split_words:"true" default:"10s" desc:"how often the provider is polled: a duration, or auto (droplet, hcloud): as often as PEERBRIDGE_API_BUDGET of the token's hourly limit allows, at most once a second"`
	APIBudget    float64      `split_words:"true" default:"0.5" desc:"with PEERBRIDGE_POLL_INTERVAL=auto: the share (above 0, at most 1) of the API token's hourly request limit that polling may use"`
	StaticPeers  string       `split_words:"true" desc:"static peers: name=addr,name=addr; a name given twice has two addresses"`
	// Any provider's peers are health-checked; the droplet names below
	// are aliases, read when these are not set.
	HealthCheck   string        `split_words:"true" desc:"tcp:PORT or http:PORT/PATH, run against every peer; failing peers leave DNS and are critical in Consul"`
	HealthTimeout time.Duration `split_words:"true" default:"500ms" desc:"timeout of one health check"`

	// Api and Url are spelt so because split_words needs the case change
	// to make DROPLET_API_URL.
	DropletTag           string        `split_words:"true" desc:"droplet filter: tag, sent to the API as tag_name"`
	DropletName          string        `split_words:"true" desc:"droplet filter: exact name, sent as name (not with a tag)"`
	DropletRegion        string        `split_words:"true" desc:"droplet filter: region slug, e.g. nyc3"`
	DropletVPC           string        `split_words:"true" desc:"droplet filter: VPC UUID"`
	DropletNetwork       string        `split_words:"true" default:"private" desc:"private or public IPv4 (DigitalOcean's IPv6 is always public)"`
	DropletIPVersion     string        `split_words:"true" default:"4" desc:"4, 6 or both (A and AAAA)"`
	DropletHealthCheck   string        `split_words:"true" desc:"alias of PEERBRIDGE_HEALTH_CHECK, which wins when both are set"`
	DropletHealthTimeout time.Duration `split_words:"true" default:"500ms" desc:"alias of PEERBRIDGE_HEALTH_TIMEOUT, which wins when both are set"`
	DropletExcludeSelf   bool          `split_words:"true" desc:"leave out the droplet peerbridge runs on (found through the metadata service)"`
	DropletApiUrl        string        `split_words:"true" default:"https://api.digitalocean.com/" desc:"DigitalOcean API base URL"`
	DropletMetadataUrl   string        `split_words:"true" default:"http://169.254.169.254/metadata/v1/" desc:"droplet metadata service"`

	HcloudLabelSelector string `split_words:"true" desc:"hcloud filter: label selector in Hetzner's syntax (app=web,env!=dev), sent as label_selector"`
	HcloudName          string `split_words:"true" desc:"hcloud filter: exact server name, sent as name"`
	HcloudLocation      string `split_words:"true" desc:"hcloud filter: the server's location, e.g. fsn1"`
	HcloudNetwork       string `split_words:"true" desc:"a private network's name or ID: publish the servers' addresses in it; empty: public addresses"`
	HcloudIPVersion     string `split_words:"true" default:"4" desc:"4, 6 or both (A and AAAA); IPv6 is the ::1 of the server's public /64, so not with a private network"`
	HcloudApiUrl        string `split_words:"true" desc:"Hetzner Cloud API base URL; empty: HCLOUD_ENDPOINT if set, else https://api.hetzner.cloud/v1"`

	RancherUrl       string        `split_words:"true" default:"http://rancher-metadata" desc:"Rancher 1.x metadata service"`
	RancherVersion   string        `split_words:"true" default:"latest" desc:"metadata API version, e.g. 2015-12-19"`
	RancherServices  string        `split_words:"true" desc:"stack/service,...; empty: the bridge's own service"`
	RancherAnyState  bool          `split_words:"true" desc:"also take containers that are not running"`
	RancherAnyHealth bool          `split_words:"true" desc:"also take containers whose health_state is not healthy"`
	RancherWait      time.Duration `split_words:"true" default:"60s" desc:"long-poll wait for metadata changes, at most 120s"`

	// Region, credentials and endpoint are the AWS SDK's own variables.
	Ec2Filters  string `split_words:"true" desc:"DescribeInstances filters as the AWS CLI names them: name=v1,v2;name=v, e.g. tag:app=myapp; instance-state-name=running is always added"`
	Ec2Address  string `split_words:"true" default:"private" desc:"private, public or ipv6 (from the network interfaces)"`
	Ec2LabelTag string `split_words:"true" default:"Name" desc:"the tag whose value names a peer; the instance id when absent"`
}

// TokenEnv is DigitalOcean's own variables, as doctl and Terraform read
// them (prefix DIGITALOCEAN). The token is never logged.
type TokenEnv struct {
	Token           string `split_words:"true" desc:"DigitalOcean API token, for the droplet provider"`
	AccessToken     string `split_words:"true" desc:"the same, under the name some tools use"`
	TokenFile       string `split_words:"true" desc:"a file that holds the token (e.g. a mounted secret)"`
	AccessTokenFile string `split_words:"true" desc:"the same"`
}

// envSpec is every variable, for help.
type envSpec struct {
	GlobalEnv
	TopologyEnv
}

// pollInterval reads a Go duration, or "auto": as often as the provider's
// API budget allows (bridge.Budget).
type pollInterval struct {
	auto  bool
	every time.Duration
}

func (p *pollInterval) Decode(v string) error {
	if strings.EqualFold(strings.TrimSpace(v), "auto") {
		*p = pollInterval{auto: true}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither a duration such as 10s or 1m30s nor auto", v)
	}
	*p = pollInterval{every: d}
	return nil
}

// autoFallback is the interval of an auto topology until its API has
// reported its limit: the default interval.
const autoFallback = 10 * time.Second

// meteredProviders are the providers whose APIs report their rate limit
// in every answer, which auto polling paces by.
var meteredProviders = []string{"droplet", "hcloud"}

// ttl reads a TTL as whole seconds ("30") or a Go duration ("30s").
type ttl time.Duration

func (t *ttl) Decode(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*t = ttl(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not whole seconds or a duration, e.g. 30 or 30s", v)
	}
	*t = ttl(d)
	return nil
}

// config is the validated configuration.
type config struct {
	dns        dnsserver.Config
	dnsAddr    string
	httpAddr   string
	logLevel   slog.Level
	logFormat  string
	topologies []topology
	// consul is nil when Consul publishing is off.
	consul *consulConfig
	// ha is nil without leader election.
	ha *haConfig
	// warnings are settings that work but probably not as meant; they
	// are logged at start.
	warnings []warning
}

type warning struct{ variable, msg string }

// haConfig is leader election's settings.
type haConfig struct {
	key                                string
	checkTTL, lockDelay, renewDeadline time.Duration
}

// consulConfig is the Consul publisher's settings; the client's own come
// from CONSUL_HTTP_* as consul/api reads them.
type consulConfig struct {
	owner string
	tags  []string
}

// topology is one validated topology.
type topology struct {
	name         string
	service      string
	provider     string
	port         uint16
	portName     string
	nodeBasename string
	interval     time.Duration
	// budget is the share of the API's hourly limit an auto interval
	// spends; 0 for a fixed interval.
	budget float64
	// newSource builds the topology's provider once the logger exists;
	// everything it could fail on was checked while validating.
	newSource func(*slog.Logger) (bridge.Provider, error)
	// checker health-checks every polled set; nil without a check.
	checker bridge.Checker
	// details describe the provider's settings for the start-up log.
	details []any
}

// pacer returns the topology's budget pacer: nil for a fixed interval,
// else a new one, since a pacer's memory of requests belongs to one run
// of the loop.
func (t topology) pacer() *bridge.Budget {
	if t.budget == 0 {
		return nil
	}
	b, _ := bridge.NewBudget(t.budget, t.interval) // checked by loadConfig
	return b
}

func (t topology) intervalText() string {
	if t.budget > 0 {
		return fmt.Sprintf("auto (%.0f%% of the API budget)", 100*t.budget)
	}
	return t.interval.String()
}

// configError lists every problem found in the configuration, one a line.
type configError struct{ problems []string }

func (e *configError) Error() string { return strings.Join(e.problems, "\n") }

var basenameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// loadConfig reads the environment and assembles the configuration. The
// rules live with the packages that use the settings (provider options,
// dnsserver.Config, health.Parse); their bridge.SettingError values are
// mapped here to the variables that were set. It returns a *configError
// naming every problem at once.
func loadConfig() (*config, error) {
	r := &reader{}
	var g GlobalEnv
	r.read(envPrefix, &g, false)
	var base TopologyEnv
	r.read(envPrefix, &base, false)

	cfg := &config{
		dns: dnsserver.Config{
			Zone: g.DNSDomain, TTL: time.Duration(g.DNSTtl), NegativeTTL: time.Duration(g.DNSNegativeTTL),
			MaxTCPConns: g.DNSMaxTCPConns,
		},
		dnsAddr:   g.DNSAddr,
		httpAddr:  g.HTTPAddr,
		logFormat: g.LogFormat,
	}
	if r.settings("", cfg.dns.Validate()) {
		cfg.dns.Zone, _ = dnsserver.CanonicalZone(g.DNSDomain)
	}
	r.check("PEERBRIDGE_DNS_ADDR", checkAddr(g.DNSAddr))
	checkTransfer(r, &cfg.dns, g)
	if g.HTTPAddr != "" {
		r.check("PEERBRIDGE_HTTP_ADDR", checkAddr(g.HTTPAddr))
	}
	if err := cfg.logLevel.UnmarshalText([]byte(g.LogLevel)); err != nil {
		r.add("PEERBRIDGE_LOG_LEVEL", "%q is not one of debug, info, warn, error", g.LogLevel)
	}
	if g.LogFormat != "text" && g.LogFormat != "json" {
		r.add("PEERBRIDGE_LOG_FORMAT", "%q is not text or json", g.LogFormat)
	}
	_, consulAddrSet := os.LookupEnv("CONSUL_HTTP_ADDR")
	if (g.Consul == nil && consulAddrSet) || (g.Consul != nil && *g.Consul) {
		cfg.consul = &consulConfig{owner: strings.ToLower(g.Owner)}
		if !dnsserver.IsLabel(cfg.consul.owner) {
			r.add("PEERBRIDGE_OWNER", "%q is not a DNS label (letters, digits, inner hyphens): it starts every node name", g.Owner)
		}
		for _, tag := range g.ConsulTags {
			if tag = strings.TrimSpace(tag); tag != "" {
				cfg.consul.tags = append(cfg.consul.tags, tag)
			}
		}
	}
	cfg.ha = r.ha(g, cfg.consul)

	token := &tokenSource{}
	if len(g.Topologies) == 0 {
		if base.Service == "" {
			r.add("PEERBRIDGE_SERVICE", "required: the service name, a DNS label such as myapp (or set PEERBRIDGE_TOPOLOGIES)")
		} else {
			cfg.topologies = append(cfg.topologies, r.topology(cfg, strings.ToLower(base.Service), "", base, token))
		}
	} else {
		if _, set := os.LookupEnv(envPrefix + "_SERVICE"); set {
			cfg.warnings = append(cfg.warnings, warning{envPrefix + "_SERVICE",
				"ignored with PEERBRIDGE_TOPOLOGIES: a topology's service is PEERBRIDGE_<NAME>_SERVICE, else its name"})
		}
		seen := map[string]bool{}
		for _, raw := range g.Topologies {
			name := strings.ToLower(strings.TrimSpace(raw))
			switch {
			case !dnsserver.IsLabel(name):
				r.add("PEERBRIDGE_TOPOLOGIES", "%q is not a DNS label (letters, digits, inner hyphens)", raw)
				continue
			case seen[name]:
				r.add("PEERBRIDGE_TOPOLOGIES", "topology %q is listed twice", name)
				continue
			}
			seen[name] = true
			prefix := topologyPrefix(name)
			env := base
			r.read(prefix, &env, true)
			if _, set := os.LookupEnv(prefix + "_SERVICE"); !set {
				env.Service = name
			}
			cfg.topologies = append(cfg.topologies, r.topology(cfg, name, prefix, env, token))
		}
	}

	services := map[string]string{}
	for _, t := range cfg.topologies {
		if other, dup := services[t.service]; dup {
			r.add(varName(topologyPrefix(t.name), "SERVICE"), "service %q is also topology %s's", t.service, other)
		}
		services[t.service] = t.name
	}
	for _, ns := range cfg.dns.NS {
		// A name server inside a service's names would mix its glue into
		// the service's answers.
		below, inside := strings.CutSuffix(ns.Name, "."+cfg.dns.Zone)
		if top := below[strings.LastIndexByte(below, '.')+1:]; inside && services[top] != "" {
			r.add("PEERBRIDGE_DNS_NS", "%s is inside the names of service %q", ns.Name, top)
		}
	}
	if len(r.problems) > 0 {
		return nil, &configError{r.problems}
	}
	return cfg, nil
}

func (r *reader) ha(g GlobalEnv, consul *consulConfig) *haConfig {
	if !g.HA {
		return nil
	}
	ha := &haConfig{checkTTL: g.HACheckTTL, lockDelay: g.HALockDelay, renewDeadline: g.HADeadline}
	if consul == nil {
		r.add("PEERBRIDGE_HA", "needs Consul: set CONSUL_HTTP_ADDR (or PEERBRIDGE_CONSUL=true)")
	} else {
		ha.key = strings.Trim(g.HAKeyPrefix, "/") + "/" + consul.owner
	}
	r.settings("", consulpub.ElectionOptions{CheckTTL: g.HACheckTTL, LockDelay: g.HALockDelay, RenewDeadline: g.HADeadline}.Validate())
	return ha
}

// topology assembles one topology. prefix is its variables' prefix, empty
// in the single-topology form.
func (r *reader) topology(cfg *config, name, prefix string, env TopologyEnv, token *tokenSource) topology {
	t := topology{
		name:         name,
		service:      strings.ToLower(env.Service),
		provider:     env.Provider,
		port:         env.Port,
		portName:     strings.ToLower(env.PortName),
		nodeBasename: env.NodeBasename,
		interval:     env.PollInterval.every,
	}
	r.settings(prefix, cfg.dns.CheckService(t.service, t.portName))
	if t.nodeBasename != "" && !basenameRE.MatchString(t.nodeBasename) {
		r.add(varName(prefix, "NODE_BASENAME"), "%q is not an Erlang node basename (letters, digits, _ and -)", env.NodeBasename)
	}
	switch {
	case env.PollInterval.auto:
		t.interval, t.budget = autoFallback, env.APIBudget
		if !slices.Contains(meteredProviders, t.provider) {
			r.add(varName(prefix, "POLL_INTERVAL"), "auto needs a provider whose API reports its rate limit (%s), not %s",
				strings.Join(meteredProviders, " or "), t.provider)
		}
		if _, err := bridge.NewBudget(t.budget, t.interval); err != nil {
			r.add(varName(prefix, "API_BUDGET"), "%v", err)
		}
	case t.interval < time.Second:
		r.add(varName(prefix, "POLL_INTERVAL"), "%s is too short: at least 1s", t.interval)
	}
	if t.port == 0 {
		cfg.warnings = append(cfg.warnings, warning{varName(prefix, "PORT"),
			"not set: topology " + name + "'s SRV records and Consul services get port 0"})
	}

	// The health check's new name wins over the droplet alias.
	spec, timeout := env.HealthCheck, env.HealthTimeout
	if strings.HasSuffix(varName(prefix, "HEALTH_CHECK"), "_DROPLET_HEALTH_CHECK") {
		spec = env.DropletHealthCheck
	}
	if strings.HasSuffix(varName(prefix, "HEALTH_TIMEOUT"), "_DROPLET_HEALTH_TIMEOUT") {
		timeout = env.DropletHealthTimeout
	}
	check, err := health.Parse(spec, timeout)
	r.settings(prefix, err)
	if check != nil {
		t.checker = health.NewChecker(*check, nil) // never a provider's client: no credentials go to peers
	}

	src := newSource(env, token)
	r.settings(prefix, src.err)
	t.newSource, t.details = src.build, append(src.details, "health_check", spec)
	return t
}

// source is a provider's settings, read from the environment into its
// package's options. err holds what the options' own validation found.
type source struct {
	err     error
	build   func(*slog.Logger) (bridge.Provider, error)
	details []any
}

// newSource maps a topology's variables to its provider. Adding a
// provider: its variables in TopologyEnv, a function like rancherSource
// that fills the package's Options and returns their Validate() (whose
// bridge.SettingError values name each setting), and a case here.
func newSource(env TopologyEnv, token *tokenSource) source {
	switch env.Provider {
	case "static":
		return staticSource(env)
	case "droplet":
		return dropletSource(env, token)
	case "rancher":
		return rancherSource(env)
	case "hcloud":
		return hcloudSource(env)
	case "ec2":
		return ec2Source(env)
	}
	return source{err: bridge.Invalid("PROVIDER", "%q is not a provider: use static, droplet, rancher, hcloud or ec2", env.Provider)}
}

func staticSource(env TopologyEnv) source {
	p, err := static.New(env.StaticPeers)
	var errs []error
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			errs = append(errs, bridge.Invalid("STATIC_PEERS", "%s", line))
		}
	}
	return source{err: errors.Join(errs...), build: func(*slog.Logger) (bridge.Provider, error) { return p, nil }}
}

func rancherSource(env TopologyEnv) source {
	opts := rancher.Options{
		URL: env.RancherUrl, Version: env.RancherVersion, Wait: env.RancherWait,
		AnyState: env.RancherAnyState, AnyHealth: env.RancherAnyHealth,
	}
	services, err := rancher.ParseServices(env.RancherServices)
	opts.Services = services
	err = errors.Join(err, opts.Validate())
	if env.RancherWait == 0 {
		err = errors.Join(err, bridge.Invalid("RANCHER_WAIT", "0s must be whole seconds from 1s to %ds", rancher.MaxWait))
	}
	if env.RancherVersion == "" {
		err = errors.Join(err, bridge.Invalid("RANCHER_VERSION", `"" is not an API version such as latest or 2015-12-19`))
	}
	return source{
		err: err,
		build: func(log *slog.Logger) (bridge.Provider, error) {
			opts.Logger = log
			return rancher.New(opts)
		},
		details: []any{
			"rancher_url", redactURL(opts.URL), "rancher_version", opts.Version, "rancher_services", opts.Services,
			"rancher_any_state", opts.AnyState, "rancher_any_health", opts.AnyHealth, "rancher_wait", opts.Wait,
		},
	}
}

func dropletSource(env TopologyEnv, token *tokenSource) source {
	opts := droplet.Options{
		Tag: env.DropletTag, Name: env.DropletName, Region: env.DropletRegion, VPC: env.DropletVPC,
		ExcludeSelf: env.DropletExcludeSelf, APIURL: env.DropletApiUrl, MetadataURL: env.DropletMetadataUrl,
	}
	var errs []error
	var err error
	if opts.Network, err = droplet.ParseNetwork(env.DropletNetwork); err != nil {
		errs = append(errs, err)
		opts.Network = droplet.Private
	}
	if opts.IPVersion, err = droplet.ParseIPVersion(env.DropletIPVersion); err != nil {
		errs = append(errs, err)
		opts.IPVersion = droplet.IPVersion{V4: true}
	}
	errs = append(errs, opts.Validate())
	if opts.Token, err = token.get(); err != nil {
		errs = append(errs, &variableError{token.variable, err})
	}
	return source{
		err: errors.Join(errs...),
		build: func(log *slog.Logger) (bridge.Provider, error) {
			opts.Logger = log
			return droplet.New(opts)
		},
		details: []any{
			"droplet_tag", opts.Tag, "droplet_name", opts.Name, "droplet_region", opts.Region, "droplet_vpc", opts.VPC,
			"droplet_network", opts.Network, "droplet_ip_version", env.DropletIPVersion,
			"droplet_exclude_self", opts.ExcludeSelf, "droplet_api_url", redactURL(opts.APIURL), "token_from", token.variable,
		},
	}
}

// variableError is a problem with a variable outside PEERBRIDGE_'s
// topology scheme (DIGITALOCEAN_TOKEN_FILE), named as it is.
type variableError struct {
	variable string
	err      error
}

func (e *variableError) Error() string { return e.variable + ": " + e.err.Error() }

// reader collects every problem of the environment, one line each,
// naming its variable; the same line is reported once, and a variable
// that could not be read at all only as that.
type reader struct {
	problems   []string
	unreadable map[string]bool
}

func (r *reader) add(variable, format string, args ...any) {
	line := variable + ": " + fmt.Sprintf(format, args...)
	if !r.unreadable[variable] && !slices.Contains(r.problems, line) {
		r.problems = append(r.problems, line)
	}
}

func (r *reader) check(variable string, err error) {
	if err != nil {
		r.add(variable, "%v", err)
	}
}

// settings reports the bridge.SettingError values in err under the
// variables that were set for them (per topology under prefix, or plain),
// and reports whether there were none.
func (r *reader) settings(prefix string, err error) bool {
	if err == nil {
		return true
	}
	var ve *variableError
	ses := bridge.SettingErrors(err)
	for _, se := range ses {
		var names []string
		for key := range strings.SplitSeq(se.Setting, ",") {
			names = append(names, varName(prefix, strings.TrimSpace(key)))
		}
		r.add(strings.Join(names, ", "), "%v", se.Err)
	}
	for _, e := range unjoin(err) {
		if errors.As(e, &ve) {
			r.add(ve.variable, "%v", ve.err)
		} else if len(bridge.SettingErrors(e)) == 0 {
			r.add(cmp.Or(prefix, envPrefix), "%v", e) // unreachable while every rule names its setting
		}
	}
	return false
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// read fills spec's fields from the variables under prefix, one field at
// a time, so that every unreadable value is reported, not only the first
// envconfig meets. With onlySet, fields whose variable is not set keep
// their value (the plain variable's, for a topology).
func (r *reader) read(prefix string, spec any, onlySet bool) {
	keys, err := envKeys(prefix, spec)
	if err != nil {
		r.add(prefix, "%v", err)
		return
	}
	v := reflect.ValueOf(spec).Elem()
	for i, key := range keys {
		if _, set := os.LookupEnv(key); onlySet && !set {
			continue
		}
		f := v.Type().Field(i)
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		if err := envconfig.Process(prefix, one.Interface()); err != nil {
			r.add(key, "%s", unreadable(err, f.Type))
			if r.unreadable == nil {
				r.unreadable = map[string]bool{}
			}
			r.unreadable[key] = true
			continue
		}
		v.Field(i).Set(one.Elem().Field(0))
	}
}

// unreadable says what a value that envconfig could not parse should
// look like, never naming a Go type.
func unreadable(err error, t reflect.Type) string {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return fmt.Sprintf("%q is not a valid duration such as 10s or 1m30s", pe.Value)
	case t == reflect.TypeFor[ttl](), t == reflect.TypeFor[pollInterval]():
		return pe.Err.Error()
	case t.Kind() == reflect.Float64:
		return fmt.Sprintf("%q is not a valid number such as 0.5", pe.Value)
	case t.Kind() == reflect.Bool:
		return fmt.Sprintf("%q is not a valid true or false", pe.Value)
	case t.Kind() == reflect.Uint16:
		return fmt.Sprintf("%q is not a valid port number (0-65535)", pe.Value)
	}
	return fmt.Sprintf("%q is not a valid value", pe.Value)
}

// topologyPrefix is the variable prefix of a topology: web-app reads
// PEERBRIDGE_WEB_APP_*.
func topologyPrefix(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// envKeys lists the variable names envconfig reads for spec, in field
// order, from envconfig itself so the two cannot disagree.
func envKeys(prefix string, spec any) ([]string, error) {
	var buf bytes.Buffer
	if err := envconfig.Usagef(prefix, spec, &buf, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return nil, err
	}
	return strings.Fields(buf.String()), nil
}

// aliases are older names read when the new one is not set.
var aliases = map[string]string{
	"HEALTH_CHECK":   "DROPLET_HEALTH_CHECK",
	"HEALTH_TIMEOUT": "DROPLET_HEALTH_TIMEOUT",
}

// varName is the variable a setting came from: the first that is set of
// the per-topology one, its per-topology alias, the plain one and the
// plain alias; else the plain one.
func varName(prefix, key string) string {
	var candidates []string
	for _, p := range []string{prefix, envPrefix} {
		if p == "" {
			continue
		}
		candidates = append(candidates, p+"_"+key)
		if alias, ok := aliases[key]; ok {
			candidates = append(candidates, p+"_"+alias)
		}
	}
	for _, c := range candidates {
		if _, set := os.LookupEnv(c); set {
			return c
		}
	}
	return envPrefix + "_" + key
}

// tokenSource reads the DigitalOcean token once, on first use, from the
// first of DIGITALOCEAN_TOKEN, DIGITALOCEAN_ACCESS_TOKEN and their _FILE
// forms that is set.
type tokenSource struct {
	once     bool
	token    string
	err      error
	variable string // where it came from, or which to set
}

func (s *tokenSource) get() (string, error) {
	if s.once {
		return s.token, s.err
	}
	s.once = true
	s.variable = "DIGITALOCEAN_TOKEN"
	var env TokenEnv
	if err := envconfig.Process("DIGITALOCEAN", &env); err != nil {
		s.err = err
		return "", err
	}
	switch {
	case env.Token != "":
		s.token = env.Token
	case env.AccessToken != "":
		s.token, s.variable = env.AccessToken, "DIGITALOCEAN_ACCESS_TOKEN"
	case env.TokenFile != "":
		s.variable = "DIGITALOCEAN_TOKEN_FILE"
		s.token, s.err = readToken(env.TokenFile)
	case env.AccessTokenFile != "":
		s.variable = "DIGITALOCEAN_ACCESS_TOKEN_FILE"
		s.token, s.err = readToken(env.AccessTokenFile)
	default:
		s.err = errors.New("required: set it (or DIGITALOCEAN_ACCESS_TOKEN, or DIGITALOCEAN_TOKEN_FILE naming a file that holds it)")
	}
	return s.token, s.err
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The path is no secret; the file's content would be.
		return "", fmt.Errorf("reading the token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("the token file %s is empty", path)
	}
	return token, nil
}

// redactURL hides a password in a URL's user info.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}

// checkAddr checks a listen address, host:port.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port such as :8653 or 127.0.0.1:8653: %v", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q has no valid port (0-65535)", addr)
	}
	return nil
}

// logValue is the effective configuration for the start-up log line.
// Credentials are never part of it: only where the token came from.
// maxLoggedTopologies is how many topologies the start-up line lists.
const maxLoggedTopologies = 20

func (c *config) logValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("zone", c.dns.Zone),
		slog.String("dns_addr", c.dnsAddr),
		slog.String("http_addr", c.httpAddr),
		slog.Duration("ttl", c.dns.TTL),
		slog.Duration("negative_ttl", c.dns.NegativeTTL),
		slog.Any("ns", c.dns.NS),
		slog.Any("transfer", c.dns.Transfer), // the TSIG key's name, never its secret
	}
	if c.ha != nil {
		attrs = append(attrs, slog.Group("ha", "key", c.ha.key, "check_ttl", c.ha.checkTTL, "lock_delay", c.ha.lockDelay, "renew_deadline", c.ha.renewDeadline))
	}
	if c.consul != nil {
		_, token := os.LookupEnv("CONSUL_HTTP_TOKEN")
		attrs = append(attrs, slog.Group("consul",
			"addr", consulpub.RedactAddr(os.Getenv("CONSUL_HTTP_ADDR")), "token_set", token,
			"owner", c.consul.owner, "tags", c.consul.tags))
	}
	// Thousands of topologies made the first line megabytes long: the
	// first few are listed, the rest counted (/status lists them all).
	shown := c.topologies[:min(len(c.topologies), maxLoggedTopologies)]
	if more := len(c.topologies) - len(shown); more > 0 {
		attrs = append(attrs, slog.Int("topologies", len(c.topologies)), slog.Int("topologies_not_listed", more))
	}
	for _, t := range shown {
		attrs = append(attrs, slog.Group("topology."+t.name, append([]any{
			"service", t.service, "provider", t.provider, "port", t.port,
			"port_name", t.portName, "node_basename", t.nodeBasename, "poll_interval", t.intervalText(),
		}, t.details...)...))
	}
	return slog.GroupValue(attrs...)
}

// checkTransfer parses the zone transfer variables into dns.
func checkTransfer(r *reader, dns *dnsserver.Config, g GlobalEnv) {
	var err error
	if dns.Transfer.Allow, err = dnsserver.ParseTransferAllow(g.DNSTransferAllow); err != nil {
		r.add("PEERBRIDGE_DNS_TRANSFER_ALLOW", "%v", err)
	}
	if dns.Transfer.Notify, err = dnsserver.ParseNotify(g.DNSNotify); err != nil {
		r.add("PEERBRIDGE_DNS_NOTIFY", "%v", err)
	}
	if dns.Transfer.Key, err = dnsserver.ParseTSIGKey(g.DNSTsigKey); err != nil {
		r.add("PEERBRIDGE_DNS_TSIG_KEY", "%v", err)
	}
	if dns.NS, err = dnsserver.ParseNameServers(g.DNSNs); err != nil {
		r.add("PEERBRIDGE_DNS_NS", "%v", err)
	} else if err := dnsserver.CheckNameServers(dns.Zone, dns.NS); err != nil {
		r.add("PEERBRIDGE_DNS_NS", "%v", err)
	}
}

// logWarnings logs what loadConfig found doubtful.
func (c *config) logWarnings(log *slog.Logger) {
	for _, w := range c.warnings {
		log.Warn("configuration: "+w.msg, "variable", w.variable)
	}
}
