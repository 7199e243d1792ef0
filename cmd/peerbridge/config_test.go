package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// setEnv clears every PEERBRIDGE_ variable and sets vars, for this test.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix+"_") || strings.HasPrefix(k, "DIGITALOCEAN_") || strings.HasPrefix(k, "HCLOUD_") || strings.HasPrefix(k, "CONSUL_") {
			t.Setenv(k, "") // restores the old value after the test
			os.Unsetenv(k)
		}
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

func TestSingleTopology(t *testing.T) {
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":       "MyApp",
		"PEERBRIDGE_STATIC_PEERS":  "a=10.0.0.1",
		"PEERBRIDGE_PORT":          "4369",
		"PEERBRIDGE_PORT_NAME":     "epmd",
		"PEERBRIDGE_DNS_TTL":       "30",
		"PEERBRIDGE_DNS_DOMAIN":    "Cluster.Example",
		"PEERBRIDGE_NODE_BASENAME": "app",
		// Bare names belong to other programs and must not be read.
		"PORT": "80", "SERVICE": "other", "LOG_LEVEL": "bogus",
	})
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.topologies) != 1 {
		t.Fatalf("%d topologies, want 1", len(cfg.topologies))
	}
	top := cfg.topologies[0]
	if top.name != "myapp" || top.service != "myapp" || top.port != 4369 || top.portName != "epmd" ||
		top.nodeBasename != "app" || top.interval != 10*time.Second || top.provider != "static" || top.newSource == nil {
		t.Errorf("topology = %+v", top)
	}
	if cfg.dns.Zone != "cluster.example." || cfg.dns.TTL != 30*time.Second || cfg.dns.NegativeTTL != 5*time.Second {
		t.Errorf("dns = %+v", cfg.dns)
	}
	if cfg.dnsAddr != ":8653" || cfg.httpAddr != ":8654" || cfg.logFormat != "text" {
		t.Errorf("defaults: dns %q http %q log %q", cfg.dnsAddr, cfg.httpAddr, cfg.logFormat)
	}
}

func TestMultiTopology(t *testing.T) {
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES":           "web, worker-pool",
		"PEERBRIDGE_POLL_INTERVAL":        "30s", // the default for both
		"PEERBRIDGE_STATIC_PEERS":         "shared=10.0.0.9",
		"PEERBRIDGE_SERVICE":              "ignored-in-multi-form",
		"PEERBRIDGE_WEB_POLL_INTERVAL":    "5s",
		"PEERBRIDGE_WEB_PORT":             "4000",
		"PEERBRIDGE_WORKER_POOL_SERVICE":  "jobs",
		"PEERBRIDGE_WORKER_POOL_PROVIDER": "static",
	})
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.topologies) != 2 {
		t.Fatalf("%d topologies, want 2", len(cfg.topologies))
	}
	web, worker := cfg.topologies[0], cfg.topologies[1]
	if web.name != "web" || web.service != "web" || web.interval != 5*time.Second || web.port != 4000 {
		t.Errorf("web = %+v", web)
	}
	if worker.name != "worker-pool" || worker.service != "jobs" || worker.interval != 30*time.Second || worker.port != 0 {
		t.Errorf("worker = %+v", worker)
	}
	for _, top := range cfg.topologies {
		src, err := top.newSource(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		peers, err := src.Peers(context.Background())
		if err != nil || len(peers) != 1 || peers[0].Name != "shared" {
			t.Errorf("%s: peers %v, %v; want the plain PEERBRIDGE_STATIC_PEERS", top.name, peers, err)
		}
	}
}

func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // one line each, in order
	}{
		{"no service", map[string]string{}, []string{"PEERBRIDGE_SERVICE: required"}},
		{"every problem named", map[string]string{
			"PEERBRIDGE_SERVICE":       "my_app",
			"PEERBRIDGE_DNS_DOMAIN":    "a..b",
			"PEERBRIDGE_DNS_TTL":       "1500ms",
			"PEERBRIDGE_DNS_ADDR":      "8653",
			"PEERBRIDGE_HTTP_ADDR":     "localhost:http-ish",
			"PEERBRIDGE_LOG_LEVEL":     "loud",
			"PEERBRIDGE_LOG_FORMAT":    "xml",
			"PEERBRIDGE_PORT_NAME":     "a_very_long_port_name",
			"PEERBRIDGE_NODE_BASENAME": "app@host",
			"PEERBRIDGE_POLL_INTERVAL": "10ms",
			"PEERBRIDGE_STATIC_PEERS":  "a=1.2.3,b",
		}, []string{
			"PEERBRIDGE_DNS_DOMAIN: ",
			"PEERBRIDGE_DNS_TTL: 1.5s must be whole seconds",
			"PEERBRIDGE_DNS_ADDR: ",
			"PEERBRIDGE_HTTP_ADDR: ",
			"PEERBRIDGE_LOG_LEVEL: ",
			"PEERBRIDGE_LOG_FORMAT: ",
			`PEERBRIDGE_SERVICE: "my_app" is not a DNS label`,
			"PEERBRIDGE_PORT_NAME: ",
			"PEERBRIDGE_NODE_BASENAME: ",
			"PEERBRIDGE_POLL_INTERVAL: 10ms is too short",
			`PEERBRIDGE_STATIC_PEERS: entry 1 "a=1.2.3"`,
			`PEERBRIDGE_STATIC_PEERS: entry 2 "b"`,
		}},
		{"unparsable value names its variable", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_PORT": "99999",
		}, []string{`PEERBRIDGE_PORT: "99999" is not a valid port number`, "PEERBRIDGE_STATIC_PEERS: no peers given"}},
		{"per-topology problems name the per-topology variable", map[string]string{
			"PEERBRIDGE_TOPOLOGIES":        "web,web,Bad_Name",
			"PEERBRIDGE_STATIC_PEERS":      "a=10.0.0.1",
			"PEERBRIDGE_WEB_PROVIDER":      "nimbus",
			"PEERBRIDGE_WEB_POLL_INTERVAL": "soon",
		}, []string{`PEERBRIDGE_WEB_POLL_INTERVAL: "soon" is neither a duration such as 10s`,
			`PEERBRIDGE_WEB_PROVIDER: "nimbus" is not a provider`,
			`PEERBRIDGE_TOPOLOGIES: topology "web" is listed twice`,
			`PEERBRIDGE_TOPOLOGIES: "Bad_Name" is not a DNS label`}},
		{"unknown provider", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_PROVIDER": "nimbus",
		}, []string{`PEERBRIDGE_PROVIDER: "nimbus" is not a provider`}},
		{"droplet without a token", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_PROVIDER": "droplet",
		}, []string{"DIGITALOCEAN_TOKEN: required"}},
		{"droplet problems", map[string]string{
			"PEERBRIDGE_TOPOLOGIES":               "web",
			"PEERBRIDGE_PROVIDER":                 "droplet",
			"DIGITALOCEAN_TOKEN_FILE":             "/nonexistent/token",
			"PEERBRIDGE_WEB_DROPLET_TAG":          "web",
			"PEERBRIDGE_DROPLET_NAME":             "web-1",
			"PEERBRIDGE_DROPLET_NETWORK":          "vpc",
			"PEERBRIDGE_WEB_DROPLET_IP_VERSION":   "ipv6",
			"PEERBRIDGE_DROPLET_HEALTH_CHECK":     "udp:53",
			"PEERBRIDGE_DROPLET_API_URL":          "api.digitalocean.com",
			"PEERBRIDGE_WEB_DROPLET_METADATA_URL": "ftp://169.254.169.254/",
		}, []string{
			`PEERBRIDGE_DROPLET_HEALTH_CHECK: "udp:53" is not tcp:PORT or http:PORT/PATH`,
			`PEERBRIDGE_DROPLET_NETWORK: "vpc" is not private or public`,
			`PEERBRIDGE_WEB_DROPLET_IP_VERSION: "ipv6" is not 4, 6 or both`,
			"PEERBRIDGE_WEB_DROPLET_TAG, PEERBRIDGE_DROPLET_NAME: filter by tag or by name, not both",
			`PEERBRIDGE_DROPLET_API_URL: "api.digitalocean.com" is not an http(s) URL`,
			`PEERBRIDGE_WEB_DROPLET_METADATA_URL: "ftp://169.254.169.254/" is not an http(s) URL`,
			"DIGITALOCEAN_TOKEN_FILE: reading the token file",
		}},
		{"two topologies, one service", map[string]string{
			"PEERBRIDGE_TOPOLOGIES":      "a,b",
			"PEERBRIDGE_STATIC_PEERS":    "p=10.0.0.1",
			"PEERBRIDGE_B_SERVICE":       "a",
			"PEERBRIDGE_A_POLL_INTERVAL": "2s",
		}, []string{`PEERBRIDGE_B_SERVICE: service "a" is also topology a's`}},
		{"rancher problems", map[string]string{
			"PEERBRIDGE_TOPOLOGIES":       "web",
			"PEERBRIDGE_PROVIDER":         "rancher",
			"PEERBRIDGE_WEB_RANCHER_URL":  "rancher-metadata",
			"PEERBRIDGE_RANCHER_SERVICES": "demo/web,web",
			"PEERBRIDGE_RANCHER_VERSION":  "latest/self",
			"PEERBRIDGE_WEB_RANCHER_WAIT": "5m",
		}, []string{
			`PEERBRIDGE_RANCHER_SERVICES: "web" is not stack/service`,
			`PEERBRIDGE_WEB_RANCHER_URL: "rancher-metadata" is not an http(s) URL`,
			`PEERBRIDGE_RANCHER_VERSION: "latest/self" is not an API version`,
			`PEERBRIDGE_WEB_RANCHER_WAIT: 5m0s must be whole seconds from 1s to 120s`,
		}},
		{"HA without Consul", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1", "PEERBRIDGE_HA": "true",
		}, []string{"PEERBRIDGE_HA: needs Consul"}},
		{"HA timings", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1", "PEERBRIDGE_HA": "true",
			"CONSUL_HTTP_ADDR": "127.0.0.1:8500", "PEERBRIDGE_HA_CHECK_TTL": "500ms", "PEERBRIDGE_HA_LOCK_DELAY": "2m",
		}, []string{"PEERBRIDGE_HA_CHECK_TTL: 500ms must be between 1s and 1h", "PEERBRIDGE_HA_LOCK_DELAY: 2m0s must be between 1s and 60s"}},
		{"HA renew deadline not below the lock delay", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1", "PEERBRIDGE_HA": "true",
			"CONSUL_HTTP_ADDR": "127.0.0.1:8500", "PEERBRIDGE_HA_RENEW_DEADLINE": "3s",
		}, []string{"PEERBRIDGE_HA_RENEW_DEADLINE: 3s must be at least 500ms, and at least 500ms shorter than the lock delay (3s)"}},
		{"bad owner", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1",
			"PEERBRIDGE_CONSUL": "true", "PEERBRIDGE_OWNER": "team a",
		}, []string{`PEERBRIDGE_OWNER: "team a" is not a DNS label`}},
		{"consul switch not a bool", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1", "PEERBRIDGE_CONSUL": "maybe",
		}, []string{`PEERBRIDGE_CONSUL: "maybe" is not a valid`}},
		{"reserved service", map[string]string{
			"PEERBRIDGE_SERVICE": "ns", "PEERBRIDGE_STATIC_PEERS": "p=10.0.0.1",
		}, []string{`PEERBRIDGE_SERVICE: "ns" is reserved`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			_, err := loadConfig()
			var cerr *configError
			if !errors.As(err, &cerr) {
				t.Fatalf("loadConfig() error = %v, want a configError", err)
			}
			if len(cerr.problems) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(cerr.problems), len(tc.want), err)
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(cerr.problems[i], want) {
					t.Errorf("problem %d = %q, want it to start with %q", i+1, cerr.problems[i], want)
				}
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := NewMain(&out, &out).Run(context.Background(), []string{"help"}); err != nil {
		t.Fatal(err)
	}
	keys, err := envKeys(envPrefix, newEnvSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(out.String(), k) {
			t.Errorf("help does not list %s", k)
		}
	}
	// The names SPEC.md fixes for what this build implements.
	for _, k := range []string{
		"PEERBRIDGE_SERVICE", "PEERBRIDGE_PROVIDER", "PEERBRIDGE_PORT", "PEERBRIDGE_PORT_NAME",
		"PEERBRIDGE_NODE_BASENAME", "PEERBRIDGE_POLL_INTERVAL", "PEERBRIDGE_STATIC_PEERS",
		"PEERBRIDGE_TOPOLOGIES", "PEERBRIDGE_DNS_DOMAIN", "PEERBRIDGE_DNS_ADDR", "PEERBRIDGE_DNS_TTL",
		"PEERBRIDGE_DNS_NEGATIVE_TTL", "PEERBRIDGE_HTTP_ADDR", "PEERBRIDGE_LOG_LEVEL", "PEERBRIDGE_LOG_FORMAT",
		"PEERBRIDGE_DROPLET_TAG", "PEERBRIDGE_DROPLET_NAME", "PEERBRIDGE_DROPLET_REGION", "PEERBRIDGE_DROPLET_VPC",
		"PEERBRIDGE_DROPLET_NETWORK", "PEERBRIDGE_DROPLET_IP_VERSION", "PEERBRIDGE_DROPLET_HEALTH_CHECK",
		"PEERBRIDGE_DROPLET_API_URL", "PEERBRIDGE_DROPLET_METADATA_URL", "PEERBRIDGE_DROPLET_EXCLUDE_SELF",
		"DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "DIGITALOCEAN_TOKEN_FILE", "DIGITALOCEAN_ACCESS_TOKEN_FILE",
		"PEERBRIDGE_CONSUL", "PEERBRIDGE_OWNER", "PEERBRIDGE_CONSUL_TAGS",
		"PEERBRIDGE_HA", "PEERBRIDGE_HA_KEY_PREFIX", "PEERBRIDGE_HA_CHECK_TTL", "PEERBRIDGE_HA_LOCK_DELAY", "PEERBRIDGE_HA_RENEW_DEADLINE",
		"PEERBRIDGE_RANCHER_URL", "PEERBRIDGE_RANCHER_VERSION", "PEERBRIDGE_RANCHER_SERVICES",
		"PEERBRIDGE_RANCHER_ANY_STATE", "PEERBRIDGE_RANCHER_ANY_HEALTH", "PEERBRIDGE_RANCHER_WAIT",
	} {
		if !strings.Contains(out.String(), k+" ") && !strings.Contains(out.String(), k+"\t") {
			t.Errorf("help lacks %s", k)
		}
	}
	if !strings.Contains(out.String(), "10s") || !strings.Contains(out.String(), "peers.internal.") {
		t.Error("help does not show the defaults")
	}
}

func TestCommands(t *testing.T) {
	setEnv(t, nil)
	var out bytes.Buffer
	m := NewMain(&out, &out)
	if err := m.Run(context.Background(), []string{"version"}); err != nil || !strings.HasPrefix(out.String(), "peerbridge ") {
		t.Errorf("version: %v, %q", err, out.String())
	}
	for _, args := range [][]string{{"serve"}, {"run", "extra"}} {
		if err := m.Run(context.Background(), args); !errors.Is(err, errUsage) {
			t.Errorf("Run(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestDropletToken(t *testing.T) {
	const secret = "dop_v1_thisisthesecretvalue"
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, variable string
		env            map[string]string
	}{
		{"token", "DIGITALOCEAN_TOKEN", map[string]string{"DIGITALOCEAN_TOKEN": secret}},
		{"access token", "DIGITALOCEAN_ACCESS_TOKEN", map[string]string{"DIGITALOCEAN_ACCESS_TOKEN": secret}},
		{"token file", "DIGITALOCEAN_TOKEN_FILE", map[string]string{"DIGITALOCEAN_TOKEN_FILE": file}},
		{"access token file", "DIGITALOCEAN_ACCESS_TOKEN_FILE", map[string]string{"DIGITALOCEAN_ACCESS_TOKEN_FILE": file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PROVIDER": "droplet"}
			maps.Copy(env, tc.env)
			setEnv(t, env)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			newLogger(&logs, slog.LevelInfo, "json").Info("config", "config", cfg.logValue())
			if strings.Contains(logs.String(), secret) {
				t.Fatalf("the effective configuration shows the token: %s", logs.String())
			}
			if !strings.Contains(logs.String(), `"token_from":"`+tc.variable+`"`) {
				t.Errorf("the log does not say where the token came from: %s", logs.String())
			}
			if _, err := cfg.topologies[0].newSource(slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConsulSwitch(t *testing.T) {
	base := map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_STATIC_PEERS": "a=10.0.0.1"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		on   bool
	}{
		{"off by default", nil, false},
		{"on when CONSUL_HTTP_ADDR is set", map[string]string{"CONSUL_HTTP_ADDR": "127.0.0.1:8500"}, true},
		{"off when switched off", map[string]string{"CONSUL_HTTP_ADDR": "127.0.0.1:8500", "PEERBRIDGE_CONSUL": "false"}, false},
		{"on when switched on", map[string]string{"PEERBRIDGE_CONSUL": "true", "PEERBRIDGE_CONSUL_TAGS": "a, b,", "PEERBRIDGE_OWNER": "Blue"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(base)
			maps.Copy(env, tc.env)
			setEnv(t, env)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if (cfg.consul != nil) != tc.on {
				t.Fatalf("consul = %+v, want on %v", cfg.consul, tc.on)
			}
			if tc.name == "on when switched on" && (cfg.consul.owner != "blue" || !slices.Equal(cfg.consul.tags, []string{"a", "b"})) {
				t.Errorf("consul = %+v", cfg.consul)
			}
		})
	}
}
