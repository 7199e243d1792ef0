package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/bridge/statefile"
	"github.com/peerbridge/peerbridge/dnsserver"
	"github.com/peerbridge/peerbridge/providers/health"
)

const envPrefix = "PEERBRIDGE"

// Field names, not envconfig tags, give the variable names (split_words):
// with a tag envconfig would also read the bare name (PORT, LOG_LEVEL)
// from the environment, which containers often set for other programs.

// GlobalEnv is what the whole process reads once. The spec types are
// exported because envconfig reaches embedded structs by reflection.
type GlobalEnv struct {
	Topologies       []string      `split_words:"true" desc:"several topologies, e.g. web,worker; each reads PEERBRIDGE_<NAME>_<VARIABLE>, the plain variable being the default"`
	DNSDomain        string        `split_words:"true" default:"peers.internal." desc:"the zone served"`
	DNSAddr          string        `split_words:"true" default:":8653" desc:"DNS listen address, UDP and TCP"`
	DNSTtl           ttl           `split_words:"true" default:"5s" desc:"TTL of every record: seconds or a Go duration"`
	DNSNegativeTTL   ttl           `split_words:"true" default:"5s" desc:"TTL of NXDOMAIN and NODATA answers"`
	DNSMaxTCPConns   int           `split_words:"true" default:"512" desc:"most DNS TCP connections open at once; at the cap the longest idle one is closed (1 to 1048576)"`
	DNSRateLimit     int           `split_words:"true" desc:"UDP answers per second to one client network (/24 IPv4, /56 IPv6), as BIND's and Knot's RRL; 0: no limit; TCP is never limited"`
	DNSRateLimitSlip int           `split_words:"true" default:"2" desc:"every this many answers over the rate limit, one goes out truncated (so a real client retries over TCP), the others are dropped; 0 drops all, 1 truncates all"`
	HTTPAddr         string        `split_words:"true" default:":8654" desc:"listen address of /healthz, /readyz, /metrics, /status and /sd/prometheus; empty turns HTTP off"`
	HTTPMaxConns     int           `split_words:"true" default:"256" desc:"most HTTP connections open at once; at the cap the longest idle one is closed (1 to 1048576)"`
	WebConfigFile    string        `split_words:"true" desc:"a Prometheus exporter-toolkit web configuration (TLS, client certificates, basic_auth_users with bcrypt hashes) for every HTTP endpoint; /healthz and /readyz answer without a password"`
	Consul           *bool         `split_words:"true" desc:"publish to Consul's catalog (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...); default: true when CONSUL_HTTP_ADDR is set"`
	Owner            string        `split_words:"true" default:"peerbridge" desc:"owner id stamped on every Consul entry; only entries with it are changed"`
	ConsulTags       []string      `split_words:"true" desc:"tags added to every service registered in Consul"`
	HA               bool          `split_words:"true" desc:"several replicas with one owner elect a leader through Consul; followers serve DNS from the catalog"`
	HAKeyPrefix      string        `split_words:"true" default:"peerbridge/leader" desc:"Consul KV prefix of the leader lock; the key is <prefix>/<owner>"`
	HACheckTTL       time.Duration `split_words:"true" default:"3s" desc:"TTL of each replica's check on its Consul agent, bound to its session: a dead leader's session ends this long after its last renewal (1s to 1h)"`
	HALockDelay      time.Duration `split_words:"true" default:"3s" desc:"how long nobody may take the lock after a leader's session ended (1s to 60s); failover takes about CHECK_TTL + LOCK_DELAY"`
	HADeadline       time.Duration `envconfig:"HA_RENEW_DEADLINE" default:"2s" desc:"a leader that could not confirm its lock for this long stops polling and writing; at least 500ms below LOCK_DELAY, so it stops before another can start"`
	LogLevel         string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat        string        `split_words:"true" default:"text" desc:"text or json"`
	StateFile        string        `split_words:"true" desc:"a file that keeps every topology's last published peer set and the DNS serial, served at once on the next start; empty: none"`

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
	Provider     string       `split_words:"true" default:"{default}" desc:"where peers come from: {providers}"`
	Port         uint16       `split_words:"true" desc:"the peers' port, for SRV records"`
	PortName     string       `split_words:"true" desc:"names the port: adds _<name>._tcp SRV records"`
	NodeBasename string       `split_words:"true" desc:"Erlang node basename: adds TXT node=<basename>@<ip>"`
	PollInterval pollInterval `split_words:"true" default:"10s" desc:"how often the provider is polled: a duration, or auto ({metered}): as often as PEERBRIDGE_API_BUDGET of the token's hourly limit allows, at most once a second"`
	APIBudget    float64      `split_words:"true" default:"0.5" desc:"with PEERBRIDGE_POLL_INTERVAL=auto: the share (above 0, at most 1) of the API token's hourly request limit that polling may use"`
	RemoveAfter  int          `split_words:"true" default:"2" desc:"a peer leaves DNS and Consul only after this many consecutive complete polls missed it (1: at once); joins are published at once"`
	// Any provider's peers are health-checked.
	HealthCheck   string        `split_words:"true" desc:"tcp:PORT or http:PORT/PATH, run against every peer; failing peers leave DNS and are critical in Consul"`
	HealthTimeout time.Duration `split_words:"true" default:"500ms" desc:"timeout of one health check"`
	// Older names, from when only droplets were checked: aliases, read
	// when the above are not set (see aliases).
	DropletHealthCheck   string        `split_words:"true" desc:"alias of PEERBRIDGE_HEALTH_CHECK, which wins when both are set"`
	DropletHealthTimeout time.Duration `split_words:"true" default:"500ms" desc:"alias of PEERBRIDGE_HEALTH_TIMEOUT, which wins when both are set"`
}

// autoFallback is the interval of an auto topology until its API has
// reported its limit: the default interval.
const autoFallback = 10 * time.Second

// config is the validated configuration.
type config struct {
	dns      dnsserver.Config
	dnsAddr  string
	httpAddr string
	// web is PEERBRIDGE_WEB_CONFIG_FILE; nil without one.
	web        *webConfig
	logLevel   slog.Level
	logFormat  string
	stateFile  string
	topologies []topology
	// consul is nil when Consul publishing is off.
	consul *consulConfig
	// ha is nil without leader election.
	ha *haConfig
	// warnings are settings that work but probably not as meant; they
	// are logged at start.
	warnings []warning
	// httpMaxConns caps the HTTP connections (httpconns.go).
	httpMaxConns int
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
	removeAfter  int
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
	// fingerprint identifies the provider's filters and settings: a
	// saved set is used again only by a topology with the same one.
	fingerprint string
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
	base := newTopologyEnv()
	r.read(envPrefix, base.spec(), false)

	cfg := &config{
		dns: dnsserver.Config{
			Zone: g.DNSDomain, TTL: time.Duration(g.DNSTtl), NegativeTTL: time.Duration(g.DNSNegativeTTL),
			MaxTCPConns: g.DNSMaxTCPConns,
			RateLimit:   dnsserver.RateLimit{PerSecond: g.DNSRateLimit, Slip: g.DNSRateLimitSlip},
		},
		dnsAddr:   g.DNSAddr,
		httpAddr:  g.HTTPAddr,
		logFormat: g.LogFormat,
		stateFile: g.StateFile,
	}
	if r.settings("", cfg.dns.Validate()) {
		cfg.dns.Zone, _ = dnsserver.CanonicalZone(g.DNSDomain)
	}
	r.check("PEERBRIDGE_DNS_ADDR", checkAddr(g.DNSAddr))
	checkTransfer(r, &cfg.dns, g)
	if g.HTTPAddr != "" {
		r.check("PEERBRIDGE_HTTP_ADDR", checkAddr(g.HTTPAddr))
	}
	if g.WebConfigFile != "" {
		var err error
		cfg.web, err = loadWebConfig(g.WebConfigFile)
		r.check("PEERBRIDGE_WEB_CONFIG_FILE", err)
	}
	if g.StateFile != "" {
		r.check("PEERBRIDGE_STATE_FILE", statefile.CheckPath(g.StateFile))
	}
	cfg.httpMaxConns = g.HTTPMaxConns
	r.check("PEERBRIDGE_HTTP_MAX_CONNS", checkHTTPMaxConns(g.HTTPMaxConns))
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

	if len(g.Topologies) == 0 {
		if base.common().Service == "" {
			r.add("PEERBRIDGE_SERVICE", "required: the service name, a DNS label such as myapp (or set PEERBRIDGE_TOPOLOGIES)")
		} else {
			cfg.topologies = append(cfg.topologies, r.topology(cfg, strings.ToLower(base.common().Service), "", base))
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
			env := base.clone()
			r.read(prefix, env.spec(), true)
			if _, set := os.LookupEnv(prefix + "_SERVICE"); !set {
				env.common().Service = name
			}
			cfg.topologies = append(cfg.topologies, r.topology(cfg, name, prefix, env))
		}
	}

	services := map[string]string{}
	for _, t := range cfg.topologies {
		if other, dup := services[t.service]; dup {
			r.add(varName(topologyPrefix(t.name), "SERVICE"), "service %q is also topology %s's", t.service, other)
		}
		services[t.service] = t.name
		cfg.dns.Services = append(cfg.dns.Services, t.service) // SERVFAIL until it has a set
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
func (r *reader) topology(cfg *config, name, prefix string, all topologyEnv) topology {
	env := all.common()
	t := topology{
		name:         name,
		service:      strings.ToLower(env.Service),
		provider:     env.Provider,
		port:         env.Port,
		portName:     strings.ToLower(env.PortName),
		nodeBasename: env.NodeBasename,
		interval:     env.PollInterval.every,
		removeAfter:  env.RemoveAfter,
	}
	if t.removeAfter < 1 {
		r.add(varName(prefix, "REMOVE_AFTER"), "%d is not a number of polls: at least 1", env.RemoveAfter)
	}
	r.settings(prefix, cfg.dns.CheckService(t.service, t.portName))
	if t.nodeBasename != "" && !basenameRE.MatchString(t.nodeBasename) {
		r.add(varName(prefix, "NODE_BASENAME"), "%q is not an Erlang node basename (letters, digits, _ and -)", env.NodeBasename)
	}
	switch {
	case env.PollInterval.auto:
		t.interval, t.budget = autoFallback, env.APIBudget
		if p, _ := lookupProvider(t.provider); !p.Metered {
			r.add(varName(prefix, "POLL_INTERVAL"), "auto needs a provider whose API reports its rate limit (%s), not %s",
				strings.Join(meteredNames(), " or "), t.provider)
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

	src := newSource(all)
	r.settings(prefix, src.err, src.refs...)
	t.newSource, t.details = src.build, append(src.details, "health_check", spec)
	t.fingerprint = fingerprint(t.provider, all.providerEnvOf(t.provider), t.details)
	return t
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
