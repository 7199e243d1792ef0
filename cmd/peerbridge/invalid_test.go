package main

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/peerbridge/peerbridge/providers/droplet"
)

// invalid is a wrong value for a variable (named without PEERBRIDGE_),
// with what else must be set for the variable to be read at all.
type invalid struct {
	value string
	extra map[string]string
}

var (
	asDroplet = map[string]string{"PEERBRIDGE_PROVIDER": "droplet", "DIGITALOCEAN_TOKEN": "dop_v1_test"}
	asRancher = map[string]string{"PEERBRIDGE_PROVIDER": "rancher"}
	asHcloud  = map[string]string{"PEERBRIDGE_PROVIDER": "hcloud", "HCLOUD_TOKEN": "hc_test"}
	asEC2     = map[string]string{"PEERBRIDGE_PROVIDER": "ec2", "AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"}
	withHA    = map[string]string{"PEERBRIDGE_HA": "true", "CONSUL_HTTP_ADDR": "127.0.0.1:8500"}
	asECS     = map[string]string{"PEERBRIDGE_PROVIDER": "ecs", "AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true",
		"PEERBRIDGE_ECS_CLUSTER": "prod", "PEERBRIDGE_ECS_SERVICE": "web"}
	// The metadata server is a closed loopback port: ADC finds no
	// credentials without dialling out of the machine.
	asGCE   = map[string]string{"PEERBRIDGE_PROVIDER": "gce", "PEERBRIDGE_GCE_PROJECT": "my-project", "GCE_METADATA_HOST": "127.0.0.1:1"}
	asNomad = map[string]string{"PEERBRIDGE_PROVIDER": "nomad", "PEERBRIDGE_NOMAD_SERVICE": "web", "NOMAD_ADDR": "http://127.0.0.1:1"}
)

// invalidValues has an entry for every variable help lists, or an
// exemption saying why no value is invalid.
var invalidValues = map[string]invalid{
	"TOPOLOGIES":          {"web,Bad_Name", nil},
	"DNS_DOMAIN":          {"peers internal", nil},
	"DNS_ADDR":            {"8653", nil},
	"DNS_TTL":             {"-5", nil},
	"DNS_NEGATIVE_TTL":    {"1500ms", nil},
	"DNS_MAX_TCP_CONNS":   {"-1", nil},
	"DNS_RATE_LIMIT":      {"-1", nil},
	"DNS_RATE_LIMIT_SLIP": {"11", nil},
	"WEB_CONFIG_FILE":     {"/nonexistent/web-config.yml", nil},
	"DNS_TRANSFER_ALLOW":  {"10.0.0.0/33", nil},
	"DNS_NOTIFY":          {"secondary", nil},
	"DNS_TSIG_KEY":        {"xfr:hmac-md4:c2VjcmV0", nil},
	"DNS_NS":              {"ns1=not-an-address", nil},
	"HTTP_ADDR":           {"localhost:http-ish", nil},
	"HTTP_MAX_CONNS":      {"0", nil},
	"CONSUL":              {"maybe", nil},
	"OWNER":               {"team a", map[string]string{"PEERBRIDGE_CONSUL": "true"}},
	"HA":                  {"perhaps", nil},
	"HA_CHECK_TTL":        {"500ms", withHA},
	"HA_RENEW_DEADLINE":   {"3s", withHA},
	"HA_LOCK_DELAY":       {"2m", withHA},
	"LOG_LEVEL":           {"loud", nil},
	"LOG_FORMAT":          {"xml", nil},
	"STATE_FILE":          {"/nonexistent/peerbridge/state.json", nil},

	"SERVICE":        {"my_app", nil},
	"PROVIDER":       {"nimbus", nil},
	"PORT":           {"99999", nil},
	"PORT_NAME":      {"a_very_long_port_name", nil},
	"NODE_BASENAME":  {"app@host", nil},
	"POLL_INTERVAL":  {"10ms", nil},
	"REMOVE_AFTER":   {"0", nil},
	"STATIC_PEERS":   {"a=1.2.3", nil},
	"API_BUDGET":     {"0", merge(asDroplet, map[string]string{"PEERBRIDGE_POLL_INTERVAL": "auto"})},
	"HEALTH_CHECK":   {"udp:53", nil},
	"HEALTH_TIMEOUT": {"0s", nil},

	"DROPLET_TAG":            {"web", merge(asDroplet, map[string]string{"PEERBRIDGE_DROPLET_NAME": "web-1"})},
	"DROPLET_NAME":           {"web-1", merge(asDroplet, map[string]string{"PEERBRIDGE_DROPLET_TAG": "web"})},
	"DROPLET_NETWORK":        {"vpc", asDroplet},
	"DROPLET_IP_VERSION":     {"ipv6", asDroplet},
	"DROPLET_HEALTH_CHECK":   {"tcp:0", nil},
	"DROPLET_HEALTH_TIMEOUT": {"-1s", nil},
	"DROPLET_EXCLUDE_SELF":   {"sometimes", asDroplet},
	"DROPLET_API_URL":        {"api.digitalocean.com", asDroplet},
	"DROPLET_METADATA_URL":   {"ftp://169.254.169.254/", asDroplet},

	"HCLOUD_NETWORK":    {"0", asHcloud},
	"HCLOUD_IP_VERSION": {"v6", asHcloud},
	"HCLOUD_API_URL":    {"api.hetzner.cloud", asHcloud},

	"EC2_FILTERS": {"tag:app", asEC2},
	"EC2_ADDRESS": {"elastic", asEC2},

	"ECS_CLUSTER": {"prod cluster", asECS},
	"ECS_SERVICE": {"web", merge(asECS, map[string]string{"PEERBRIDGE_ECS_FAMILY": "web"})},
	"ECS_FAMILY":  {"web:3", merge(asECS, map[string]string{"PEERBRIDGE_ECS_SERVICE": ""})},
	"ECS_ADDRESS": {"public", asECS},

	"GCE_PROJECT": {"My Project", asGCE},
	"GCE_ZONES":   {"europe west1", asGCE},
	"GCE_ADDRESS": {"elastic", asGCE},
	"GCE_API_URL": {"https://compute.googleapis.com/compute/v1", asGCE},

	"NOMAD_SERVICE":   {"-web-", asNomad},
	"NOMAD_TAGS":      {"a\x01b", asNomad},
	"NOMAD_NAMESPACE": {"prod ns", asNomad},

	"RANCHER_URL":        {"rancher-metadata", asRancher},
	"RANCHER_VERSION":    {"..", asRancher},
	"RANCHER_SERVICES":   {"web", asRancher},
	"RANCHER_ANY_STATE":  {"maybe", asRancher},
	"RANCHER_ANY_HEALTH": {"maybe", asRancher},
	"RANCHER_WAIT":       {"5m", asRancher},
}

// exempt variables have no invalid value.
var exempt = map[string]string{
	"CONSUL_TAGS":               "free-text tags, any string is a Consul tag",
	"HA_KEY_PREFIX":             "any Consul KV path",
	"DROPLET_REGION":            "a filter compared with the droplets' region slugs; an unknown one matches nothing",
	"DROPLET_VPC":               "a filter compared with the droplets' VPC UUIDs; an unknown one matches nothing",
	"HCLOUD_LABEL_SELECTOR":     "Hetzner's selector syntax is checked by the API, which answers 400 (the poll fails, the error names it)",
	"HCLOUD_NAME":               "a filter compared with the servers' names; an unknown one matches nothing",
	"HCLOUD_LOCATION":           "a filter compared with the servers' locations; an unknown one matches nothing",
	"EC2_LABEL_TAG":             "any tag key; an instance without that tag is named by its id",
	"GCE_FILTER":                "Compute's filter syntax is checked by the API, which answers 400 (the poll fails, the error names it)",
	"DIGITALOCEAN_TOKEN":        "any string; only the API can tell a wrong token (exit 1 with a credentials error)",
	"DIGITALOCEAN_ACCESS_TOKEN": "the same",
}

// tokenInvalid are DigitalOcean's variables, which have no per-topology
// form.
var tokenInvalid = map[string]string{
	"DIGITALOCEAN_TOKEN_FILE":        "/nonexistent/token",
	"DIGITALOCEAN_ACCESS_TOKEN_FILE": "/nonexistent/token",
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// TestEveryInvalidVariableIsRejected sets each variable help lists to an
// invalid value, in the plain and the per-topology form, and expects
// check to stop at the configuration (main exits 2 on a configError)
// with a line naming that variable.
func TestEveryInvalidVariableIsRejected(t *testing.T) {
	global, err := envKeys(envPrefix, &GlobalEnv{})
	if err != nil {
		t.Fatal(err)
	}
	perTopology, err := envKeys(envPrefix, newTopologyEnv().spec())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := envKeys(droplet.TokenPrefix, &droplet.TokenEnv{})
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"PEERBRIDGE_STATIC_PEERS": "a=10.0.0.1", "PEERBRIDGE_PORT": "4369"}
	run := func(t *testing.T, variable string, env map[string]string) {
		t.Helper()
		setEnv(t, env)
		var out bytes.Buffer
		err := NewMain(&out, &out).Run(context.Background(), []string{"check"})
		var cerr *configError
		if !errors.As(err, &cerr) {
			t.Fatalf("check = %v, want a configuration error (exit 2)\n%s", err, out.String())
		}
		for _, p := range cerr.problems {
			named, _, _ := strings.Cut(p, ": ")
			if slices.Contains(strings.Split(named, ", "), variable) {
				if strings.Contains(p, "main.") || strings.Contains(p, "time.Duration") || strings.Contains(p, "uint16") {
					t.Errorf("%q names a Go type", p)
				}
				return
			}
		}
		t.Errorf("no line names %s:\n%s", variable, cerr)
	}
	for _, key := range append(global, perTopology...) {
		short := strings.TrimPrefix(key, envPrefix+"_")
		bad, ok := invalidValues[short]
		if !ok {
			if _, ok := exempt[short]; !ok {
				t.Errorf("%s has no invalid value in the table and is not exempt", key)
			}
			continue
		}
		t.Run(key, func(t *testing.T) {
			run(t, key, merge(base, map[string]string{"PEERBRIDGE_SERVICE": "web"}, bad.extra, map[string]string{key: bad.value}))
		})
		if !slices.Contains(perTopology, key) {
			continue
		}
		t.Run("PEERBRIDGE_WEB_"+short, func(t *testing.T) {
			env := merge(base, map[string]string{"PEERBRIDGE_TOPOLOGIES": "web"}, bad.extra)
			env["PEERBRIDGE_WEB_"+short] = bad.value
			run(t, "PEERBRIDGE_WEB_"+short, env)
		})
	}
	for _, key := range tokens {
		value, ok := tokenInvalid[key]
		if !ok {
			if _, ok := exempt[key]; !ok {
				t.Errorf("%s has no invalid value in the table and is not exempt", key)
			}
			continue
		}
		t.Run(key, func(t *testing.T) {
			run(t, key, merge(base, map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PROVIDER": "droplet", key: value}))
		})
	}
}

// TestEveryProblemAtOnce: several invalid variables, each reported.
func TestEveryProblemAtOnce(t *testing.T) {
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_STATIC_PEERS": "a=10.0.0.1",
		"PEERBRIDGE_DNS_TTL": "-5", "PEERBRIDGE_DNS_NEGATIVE_TTL": "x", "PEERBRIDGE_PORT": "99999",
		"PEERBRIDGE_POLL_INTERVAL": "soon", "PEERBRIDGE_HEALTH_CHECK": "udp:1",
	})
	_, err := loadConfig()
	var cerr *configError
	if !errors.As(err, &cerr) || len(cerr.problems) != 5 {
		t.Fatalf("loadConfig = %v, want 5 problems", err)
	}
	if !strings.HasPrefix(cerr.problems[0], `PEERBRIDGE_DNS_TTL: "-5" is not whole seconds or a duration, e.g. 30 or 30s`) {
		t.Errorf("DNS_TTL=-5: %q", cerr.problems[0])
	}
}

// TestHealthCheckAnyProvider: a static topology with a dead peer gets it
// marked critical, and the droplet alias yields to the new name.
func TestHealthCheckAnyProvider(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"new name", map[string]string{"PEERBRIDGE_HEALTH_CHECK": "tcp:" + port}},
		{"alias", map[string]string{"PEERBRIDGE_DROPLET_HEALTH_CHECK": "tcp:" + port}},
		{"new name wins", map[string]string{"PEERBRIDGE_HEALTH_CHECK": "tcp:" + port, "PEERBRIDGE_DROPLET_HEALTH_CHECK": "tcp:1"}},
		{"per topology", map[string]string{"PEERBRIDGE_TOPOLOGIES": "web", "PEERBRIDGE_WEB_HEALTH_CHECK": "tcp:" + port, "PEERBRIDGE_HEALTH_CHECK": "tcp:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, merge(map[string]string{
				"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PORT": "4369", "PEERBRIDGE_HEALTH_TIMEOUT": "2s",
				"PEERBRIDGE_STATIC_PEERS": "alive=127.0.0.1,dead=127.0.0.2",
			}, tc.env))
			var out bytes.Buffer
			if err := NewMain(&out, &out).Run(context.Background(), []string{"check"}); err != nil {
				t.Fatalf("check: %v\n%s", err, out.String())
			}
			for _, want := range []string{"peers: 2 (1 published)", "health=passing", "health=critical", "SRV\t0 1 4369 alive.web.peers.internal."} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("check output lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "dead.web.peers.internal.\t") {
				t.Errorf("the dead peer has records:\n%s", out.String())
			}
		})
	}
}

// TestStartWarnings: an ignored PEERBRIDGE_SERVICE and a missing port.
func TestStartWarnings(t *testing.T) {
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES": "web", "PEERBRIDGE_SERVICE": "other", "PEERBRIDGE_STATIC_PEERS": "a=10.0.0.1",
		"CONSUL_HTTP_ADDR": "admin:s3cret@127.0.0.1:8500",
	})
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := newLogger(&logs, 0, "text")
	cfg.logWarnings(log)
	log.Info("starting", "config", cfg.logValue())
	for _, want := range []string{"variable=PEERBRIDGE_SERVICE", "ignored with PEERBRIDGE_TOPOLOGIES", "variable=PEERBRIDGE_PORT", "get port 0", "addr=admin:xxxxx@127.0.0.1:8500"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the Consul password is logged:\n%s", logs.String())
	}
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
	logs.Reset()
	log.Info("starting", "config", cfg.logValue())
	if !strings.Contains(logs.String(), "addr=127.0.0.1:8500") {
		t.Errorf("the plain address is not logged as itself:\n%s", logs.String())
	}
}
