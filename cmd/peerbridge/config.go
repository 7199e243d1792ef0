package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/dnsserver"
	"github.com/peerbridge/peerbridge/providers/droplet"
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
	HTTPAddr       string        `split_words:"true" default:":8654" desc:"listen address of /healthz, /readyz, /metrics and /status; empty turns HTTP off"`
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
}

// TopologyEnv is what every topology reads, per topology in the
// multi-topology form.
type TopologyEnv struct {
	Service      string        `split_words:"true" desc:"the service name, a DNS label (single topology; else the topology name)"`
	Provider     string        `split_words:"true" default:"static" desc:"where peers come from: static, droplet or rancher"`
	Port         uint16        `split_words:"true" desc:"the peers' port, for SRV records"`
	PortName     string        `split_words:"true" desc:"names the port: adds _<name>._tcp SRV records"`
	NodeBasename string        `split_words:"true" desc:"Erlang node basename: adds TXT node=<basename>@<ip>"`
	PollInterval time.Duration `split_words:"true" default:"10s" desc:"how often the provider is polled"`
	StaticPeers  string        `split_words:"true" desc:"static peers: name=addr,name=addr; a name given twice has two addresses"`

	// Api and Url are spelt so because split_words needs the case change
	// to make DROPLET_API_URL.
	DropletTag           string        `split_words:"true" desc:"droplet filter: tag, sent to the API as tag_name"`
	DropletName          string        `split_words:"true" desc:"droplet filter: exact name, sent as name (not with a tag)"`
	DropletRegion        string        `split_words:"true" desc:"droplet filter: region slug, e.g. nyc3"`
	DropletVPC           string        `split_words:"true" desc:"droplet filter: VPC UUID"`
	DropletNetwork       string        `split_words:"true" default:"private" desc:"private or public IPv4 (DigitalOcean's IPv6 is always public)"`
	DropletIPVersion     string        `split_words:"true" default:"4" desc:"4, 6 or both (A and AAAA)"`
	DropletHealthCheck   string        `split_words:"true" desc:"tcp:PORT or http:PORT/PATH; failing peers leave DNS"`
	DropletHealthTimeout time.Duration `split_words:"true" default:"500ms" desc:"timeout of one health check"`
	DropletExcludeSelf   bool          `split_words:"true" desc:"leave out the droplet peerbridge runs on (found through the metadata service)"`
	DropletApiUrl        string        `split_words:"true" default:"https://api.digitalocean.com/" desc:"DigitalOcean API base URL"`
	DropletMetadataUrl   string        `split_words:"true" default:"http://169.254.169.254/metadata/v1/" desc:"droplet metadata service"`

	RancherUrl       string        `split_words:"true" default:"http://rancher-metadata" desc:"Rancher 1.x metadata service"`
	RancherVersion   string        `split_words:"true" default:"latest" desc:"metadata API version, e.g. 2015-12-19"`
	RancherServices  string        `split_words:"true" desc:"stack/service,...; empty: the bridge's own service"`
	RancherAnyState  bool          `split_words:"true" desc:"also take containers that are not running"`
	RancherAnyHealth bool          `split_words:"true" desc:"also take containers whose health_state is not healthy"`
	RancherWait      time.Duration `split_words:"true" default:"60s" desc:"long-poll wait for metadata changes, at most 120s"`
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

// ttl reads a TTL as whole seconds ("30") or a Go duration ("30s").
type ttl time.Duration

func (t *ttl) Decode(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*t = ttl(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither seconds nor a duration", v)
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
}

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
	// newSource builds the topology's provider once the logger exists;
	// everything it could fail on was checked while validating.
	newSource func(*slog.Logger) (bridge.Provider, error)
	// details describe the provider's settings for the start-up log.
	details []any
}

// configError lists every problem found in the configuration, one a line.
type configError struct{ problems []string }

func (e *configError) Error() string { return strings.Join(e.problems, "\n") }

// problems collects configuration problems, each naming its variable.
type problems []string

func (p *problems) add(variable, format string, args ...any) {
	*p = append(*p, variable+": "+fmt.Sprintf(format, args...))
}

var (
	labelRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	portNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`) // RFC 6335 service names
	basenameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// loadConfig reads and validates the environment. It returns a
// *configError that names every problem it found.
func loadConfig() (*config, error) {
	var errs problems
	var g GlobalEnv
	if err := envconfig.Process(envPrefix, &g); err != nil {
		return nil, &configError{[]string{envconfigProblem(err)}}
	}
	var base TopologyEnv
	if err := envconfig.Process(envPrefix, &base); err != nil {
		return nil, &configError{[]string{envconfigProblem(err)}}
	}

	cfg := &config{
		dns: dnsserver.Config{
			Zone: g.DNSDomain, TTL: time.Duration(g.DNSTtl), NegativeTTL: time.Duration(g.DNSNegativeTTL),
		},
		dnsAddr:   g.DNSAddr,
		httpAddr:  g.HTTPAddr,
		logFormat: g.LogFormat,
	}
	if zone, err := dnsserver.CanonicalZone(g.DNSDomain); err != nil {
		errs.add("PEERBRIDGE_DNS_DOMAIN", "%v", err)
	} else {
		cfg.dns.Zone = zone
	}
	checkTTL(&errs, "PEERBRIDGE_DNS_TTL", g.DNSTtl)
	checkTTL(&errs, "PEERBRIDGE_DNS_NEGATIVE_TTL", g.DNSNegativeTTL)
	checkAddr(&errs, "PEERBRIDGE_DNS_ADDR", g.DNSAddr)
	if g.HTTPAddr != "" {
		checkAddr(&errs, "PEERBRIDGE_HTTP_ADDR", g.HTTPAddr)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(g.LogLevel)); err != nil {
		errs.add("PEERBRIDGE_LOG_LEVEL", "%q is not one of debug, info, warn, error", g.LogLevel)
	}
	if g.LogFormat != "text" && g.LogFormat != "json" {
		errs.add("PEERBRIDGE_LOG_FORMAT", "%q is not text or json", g.LogFormat)
	}
	_, consulAddrSet := os.LookupEnv("CONSUL_HTTP_ADDR")
	if (g.Consul == nil && consulAddrSet) || (g.Consul != nil && *g.Consul) {
		cfg.consul = &consulConfig{owner: strings.ToLower(g.Owner)}
		if !labelRE.MatchString(cfg.consul.owner) {
			errs.add("PEERBRIDGE_OWNER", "%q is not a DNS label (letters, digits, inner hyphens): it starts every node name", g.Owner)
		}
		for _, tag := range g.ConsulTags {
			if tag = strings.TrimSpace(tag); tag != "" {
				cfg.consul.tags = append(cfg.consul.tags, tag)
			}
		}
	}

	if g.HA {
		cfg.ha = &haConfig{checkTTL: g.HACheckTTL, lockDelay: g.HALockDelay, renewDeadline: g.HADeadline}
		if cfg.consul == nil {
			errs.add("PEERBRIDGE_HA", "needs Consul: set CONSUL_HTTP_ADDR (or PEERBRIDGE_CONSUL=true)")
		} else {
			cfg.ha.key = strings.Trim(g.HAKeyPrefix, "/") + "/" + cfg.consul.owner
		}
		err := consulpub.ElectionOptions{CheckTTL: g.HACheckTTL, LockDelay: g.HALockDelay, RenewDeadline: g.HADeadline}.Validate()
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				var se *consulpub.SettingError
				if !errors.As(e, &se) {
					continue
				}
				errs.add(map[string]string{"CheckTTL": "PEERBRIDGE_HA_CHECK_TTL", "LockDelay": "PEERBRIDGE_HA_LOCK_DELAY",
					"RenewDeadline": "PEERBRIDGE_HA_RENEW_DEADLINE"}[se.Setting], "%s", se.Err)
			}
		}
	}
	token := &tokenSource{}
	if len(g.Topologies) == 0 {
		if base.Service == "" {
			errs.add("PEERBRIDGE_SERVICE", "required: the service name, a DNS label such as myapp (or set PEERBRIDGE_TOPOLOGIES)")
		} else {
			cfg.topologies = append(cfg.topologies, validateTopology(&errs, strings.ToLower(base.Service), "", base, token))
		}
	} else {
		seen := map[string]bool{}
		for _, raw := range g.Topologies {
			name := strings.ToLower(strings.TrimSpace(raw))
			if !labelRE.MatchString(name) {
				errs.add("PEERBRIDGE_TOPOLOGIES", "%q is not a DNS label (letters, digits, inner hyphens)", raw)
				continue
			}
			if seen[name] {
				errs.add("PEERBRIDGE_TOPOLOGIES", "topology %q is listed twice", name)
				continue
			}
			seen[name] = true
			prefix := topologyPrefix(name)
			env, err := topologyOverlay(prefix, base)
			if err != nil {
				errs = append(errs, envconfigProblem(err))
				continue
			}
			if _, set := os.LookupEnv(prefix + "_SERVICE"); !set {
				env.Service = name
			}
			cfg.topologies = append(cfg.topologies, validateTopology(&errs, name, prefix, env, token))
		}
	}

	services := map[string]string{}
	for _, t := range cfg.topologies {
		if other, dup := services[t.service]; dup {
			errs.add(varName(topologyPrefix(t.name), "SERVICE"), "service %q is also topology %s's", t.service, other)
		}
		services[t.service] = t.name
	}
	if len(errs) > 0 {
		return nil, &configError{errs}
	}
	return cfg, nil
}

// topologyPrefix is the variable prefix of a topology: web-app reads
// PEERBRIDGE_WEB_APP_*.
func topologyPrefix(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// topologyOverlay reads the variables under prefix over base: a variable
// that is set under prefix wins, every other keeps base's value (the plain
// variable, or its default).
func topologyOverlay(prefix string, base TopologyEnv) (TopologyEnv, error) {
	var over TopologyEnv
	if err := envconfig.Process(prefix, &over); err != nil {
		return base, err
	}
	keys, err := envKeys(prefix, &over)
	if err != nil {
		return base, err
	}
	out := base
	ov, bv := reflect.ValueOf(&over).Elem(), reflect.ValueOf(&out).Elem()
	for i, key := range keys {
		if _, set := os.LookupEnv(key); set {
			bv.Field(i).Set(ov.Field(i))
		}
	}
	return out, nil
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

// varName is the variable a topology setting came from: the per-topology
// one when it is set, else the plain one.
func varName(prefix, key string) string {
	if prefix != "" {
		if _, set := os.LookupEnv(prefix + "_" + key); set {
			return prefix + "_" + key
		}
	}
	return envPrefix + "_" + key
}

func validateTopology(errs *problems, name, prefix string, env TopologyEnv, token *tokenSource) topology {
	t := topology{
		name:         name,
		service:      strings.ToLower(env.Service),
		provider:     env.Provider,
		port:         env.Port,
		portName:     strings.ToLower(env.PortName),
		nodeBasename: env.NodeBasename,
		interval:     env.PollInterval,
	}
	switch {
	case !labelRE.MatchString(t.service):
		errs.add(varName(prefix, "SERVICE"), "%q is not a DNS label (letters, digits, inner hyphens, at most 63)", env.Service)
	case t.service == "ns":
		errs.add(varName(prefix, "SERVICE"), `"ns" is reserved for the zone's name server`)
	}
	if t.portName != "" && !portNameRE.MatchString(t.portName) {
		errs.add(varName(prefix, "PORT_NAME"), "%q is not a service name (RFC 6335: letters, digits, inner hyphens, at most 15)", env.PortName)
	}
	if t.nodeBasename != "" && !basenameRE.MatchString(t.nodeBasename) {
		errs.add(varName(prefix, "NODE_BASENAME"), "%q is not an Erlang node basename (letters, digits, _ and -)", env.NodeBasename)
	}
	if t.interval < time.Second {
		errs.add(varName(prefix, "POLL_INTERVAL"), "%s is too short: at least 1s", t.interval)
	}
	switch t.provider {
	case "static":
		p, err := static.New(env.StaticPeers)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs.add(varName(prefix, "STATIC_PEERS"), "%s", line)
			}
		}
		t.newSource = func(*slog.Logger) (bridge.Provider, error) { return p, nil }
	case "droplet":
		t.newSource, t.details = validateDroplet(errs, name, prefix, env, token)
	case "rancher":
		t.newSource, t.details = validateRancher(errs, prefix, env)
	default:
		errs.add(varName(prefix, "PROVIDER"), "%q is not a provider: use static, droplet or rancher", t.provider)
	}
	return t
}

func validateRancher(errs *problems, prefix string, env TopologyEnv) (func(*slog.Logger) (bridge.Provider, error), []any) {
	opts := rancher.Options{
		URL: env.RancherUrl, Version: env.RancherVersion, Wait: env.RancherWait,
		AnyState: env.RancherAnyState, AnyHealth: env.RancherAnyHealth,
	}
	checkURL(errs, varName(prefix, "RANCHER_URL"), opts.URL)
	var err error
	if opts.Services, err = rancher.ParseServices(env.RancherServices); err != nil {
		errs.add(varName(prefix, "RANCHER_SERVICES"), "%v", err)
	}
	if v := opts.Version; v == "" || strings.ContainsAny(v, "/?#") {
		errs.add(varName(prefix, "RANCHER_VERSION"), "%q is not an API version such as latest or 2015-12-19", v)
	}
	if w := opts.Wait; w <= 0 || w > rancher.MaxWait*time.Second || w%time.Second != 0 {
		errs.add(varName(prefix, "RANCHER_WAIT"), "%s must be whole seconds from 1s to %ds", w, rancher.MaxWait)
	}
	details := []any{
		"rancher_url", redactURL(opts.URL), "rancher_version", opts.Version, "rancher_services", opts.Services,
		"rancher_any_state", opts.AnyState, "rancher_any_health", opts.AnyHealth, "rancher_wait", opts.Wait,
	}
	return func(log *slog.Logger) (bridge.Provider, error) {
		opts.Logger = log
		return rancher.New(opts)
	}, details
}

func validateDroplet(errs *problems, name, prefix string, env TopologyEnv, token *tokenSource) (func(*slog.Logger) (bridge.Provider, error), []any) {
	opts := droplet.Options{
		Tag: env.DropletTag, Name: env.DropletName, Region: env.DropletRegion, VPC: env.DropletVPC,
		ExcludeSelf: env.DropletExcludeSelf, APIURL: env.DropletApiUrl, MetadataURL: env.DropletMetadataUrl,
	}
	var err error
	if opts.Token, err = token.get(); err != nil {
		errs.add(token.variable, "%v (topology %s uses the droplet provider)", err, name)
	}
	if opts.Tag != "" && opts.Name != "" {
		errs.add(varName(prefix, "DROPLET_TAG")+", "+varName(prefix, "DROPLET_NAME"),
			"filter by tag or by name, not both: DigitalOcean's API takes one of tag_name and name")
	}
	if opts.Network, err = droplet.ParseNetwork(env.DropletNetwork); err != nil {
		errs.add(varName(prefix, "DROPLET_NETWORK"), "%v", err)
	}
	if opts.IPVersion, err = droplet.ParseIPVersion(env.DropletIPVersion); err != nil {
		errs.add(varName(prefix, "DROPLET_IP_VERSION"), "%v", err)
	}
	if opts.HealthCheck, err = droplet.ParseHealthCheck(env.DropletHealthCheck, env.DropletHealthTimeout); err != nil {
		errs.add(varName(prefix, "DROPLET_HEALTH_CHECK"), "%v", err)
	}
	checkURL(errs, varName(prefix, "DROPLET_API_URL"), opts.APIURL)
	checkURL(errs, varName(prefix, "DROPLET_METADATA_URL"), opts.MetadataURL)

	details := []any{
		"droplet_tag", opts.Tag, "droplet_name", opts.Name, "droplet_region", opts.Region, "droplet_vpc", opts.VPC,
		"droplet_network", opts.Network, "droplet_ip_version", env.DropletIPVersion,
		"droplet_health_check", env.DropletHealthCheck, "droplet_exclude_self", opts.ExcludeSelf,
		"droplet_api_url", redactURL(opts.APIURL), "token_from", token.variable,
	}
	return func(log *slog.Logger) (bridge.Provider, error) {
		opts.Logger = log
		return droplet.New(opts)
	}, details
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

func checkURL(errs *problems, variable, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.add(variable, "%q is not an http(s) URL", raw)
	}
}

// redactURL hides a password in a URL's user info.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}

func checkTTL(errs *problems, variable string, v ttl) {
	d := time.Duration(v)
	if d < 0 || d%time.Second != 0 || d > (1<<31-1)*time.Second {
		errs.add(variable, "%s must be whole seconds between 0 and 2147483647", d)
	}
}

func checkAddr(errs *problems, variable, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		errs.add(variable, "%q is not host:port: %v", addr, err)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		errs.add(variable, "%q has no valid port", addr)
	}
}

// envconfigProblem turns envconfig's parse error into a line naming the
// variable.
func envconfigProblem(err error) string {
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		what := pe.TypeName
		switch what {
		case "time.Duration":
			what = "duration such as 10s or 1m30s"
		case "uint16":
			what = "port number (0-65535)"
		}
		return fmt.Sprintf("%s: %q is not a valid %s", pe.KeyName, pe.Value, what)
	}
	return err.Error()
}

// logValue is the effective configuration for the start-up log line.
// Credentials are never part of it: only where the token came from.
func (c *config) logValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("zone", c.dns.Zone),
		slog.String("dns_addr", c.dnsAddr),
		slog.String("http_addr", c.httpAddr),
		slog.Duration("ttl", c.dns.TTL),
		slog.Duration("negative_ttl", c.dns.NegativeTTL),
	}
	if c.ha != nil {
		attrs = append(attrs, slog.Group("ha", "key", c.ha.key, "check_ttl", c.ha.checkTTL, "lock_delay", c.ha.lockDelay, "renew_deadline", c.ha.renewDeadline))
	}
	if c.consul != nil {
		_, token := os.LookupEnv("CONSUL_HTTP_TOKEN")
		attrs = append(attrs, slog.Group("consul",
			"addr", redactURL(os.Getenv("CONSUL_HTTP_ADDR")), "token_set", token,
			"owner", c.consul.owner, "tags", c.consul.tags))
	}
	for _, t := range c.topologies {
		attrs = append(attrs, slog.Group("topology."+t.name, append([]any{
			"service", t.service, "provider", t.provider, "port", t.port,
			"port_name", t.portName, "node_basename", t.nodeBasename, "poll_interval", t.interval,
		}, t.details...)...))
	}
	return slog.GroupValue(attrs...)
}
