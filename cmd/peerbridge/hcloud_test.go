package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"

	"github.com/peerbridge/peerbridge/providers/hcloud/hcloudtest"
)

func hcloudWorld(t *testing.T) *hcloudtest.API {
	return hcloudtest.New(t, []schema.Server{
		hcloudtest.Server(0, "web-0", "running", "fsn1", map[string]string{"app": "web"}, 7),
		hcloudtest.Server(1, "web-1", "running", "nbg1", map[string]string{"app": "web"}, 7),
		hcloudtest.Server(2, "web-2", "off", "fsn1", map[string]string{"app": "web"}, 7),
		hcloudtest.Server(3, "db-0", "running", "fsn1", map[string]string{"app": "db"}, 7),
	}, []schema.Network{hcloudtest.Network(7, "cluster")})
}

// TestRunHcloud wires the hcloud provider from the environment: the token
// from a file, the endpoint from the hcloud CLI's variable, and a per
// topology network.
func TestRunHcloud(t *testing.T) {
	api := hcloudWorld(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(hcloudtest.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES":                "web",
		"PEERBRIDGE_PROVIDER":                  "hcloud",
		"PEERBRIDGE_WEB_HCLOUD_LABEL_SELECTOR": "app=web",
		"PEERBRIDGE_WEB_HCLOUD_NETWORK":        "cluster",
		"PEERBRIDGE_HCLOUD_IP_VERSION":         "4",
		"HCLOUD_ENDPOINT":                      api.URL(),
		"HCLOUD_TOKEN_FILE":                    tokenFile,
		"PEERBRIDGE_DNS_ADDR":                  "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":                 "127.0.0.1:0",
		"PEERBRIDGE_WEB_NODE_BASENAME":         "web",
		"PEERBRIDGE_WEB_PORT":                  "4369",
		"PEERBRIDGE_WEB_POLL_INTERVAL":         "1m",
	})
	run := startMain(t)
	waitReady(t, "http://"+run.http)

	got := answerA(t, run.dns, "web.peers.internal.")
	if !slices.Equal(got, []string{"10.7.0.2", "10.7.0.3"}) {
		t.Errorf("A answer %v, want the two running web servers' private addresses", got)
	}
	metrics := get(t, "http://"+run.http+"/metrics")
	if !strings.Contains(metrics, `peerbridge_provider_api_requests_total{provider="hcloud",topology="web"} 2`) ||
		!strings.Contains(metrics, `peerbridge_provider_ratelimit_remaining{provider="hcloud",topology="web"} 3598`) ||
		!strings.Contains(metrics, `peerbridge_peers_skipped_total{provider="hcloud",reason="no_address",topology="web"} 0`) {
		t.Errorf("hcloud metrics missing:\n%s", metrics)
	}
	status := get(t, "http://"+run.http+"/status")
	if !strings.Contains(status, `"server_type": "cx23"`) || !strings.Contains(status, `"labels": "app=web"`) {
		t.Errorf("/status lacks the peers' attributes:\n%s", status)
	}

	var out bytes.Buffer
	if err := NewMain(&out, &out).Run(context.Background(), []string{"check"}); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"topology web: service web, provider hcloud, peers: 2 (2 published)",
		"web-0.web.peers.internal.\t5\tIN\tA\t10.7.0.2",
		"server_id=1001",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	for what, text := range map[string]string{"log": run.logs.String(), "metrics": metrics, "status": status, "check": out.String()} {
		if strings.Contains(text, hcloudtest.Token) {
			t.Fatalf("the token is in the %s:\n%s", what, text)
		}
	}
	if !strings.Contains(run.logs.String(), "token_from=HCLOUD_TOKEN_FILE") {
		t.Errorf("the start-up log does not say where the token came from:\n%s", run.logs.String())
	}
}

func TestHcloudConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // lines of the configuration error
	}{
		{"no token", map[string]string{"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_PROVIDER": "hcloud"},
			[]string{"HCLOUD_TOKEN: required: set it, or HCLOUD_TOKEN_FILE naming a file that holds it"}},
		{"v6 in a private network, bad endpoint", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_PROVIDER": "hcloud", "HCLOUD_TOKEN": "t0kent0ken",
			"PEERBRIDGE_HCLOUD_NETWORK": "cluster", "PEERBRIDGE_HCLOUD_IP_VERSION": "both", "HCLOUD_ENDPOINT": "api.example",
		}, []string{
			"PEERBRIDGE_HCLOUD_IP_VERSION: both with a private network: Hetzner's private networks are IPv4 only; use 4, or leave PEERBRIDGE_HCLOUD_NETWORK empty for public IPv6",
			`HCLOUD_ENDPOINT: "api.example" is not an http(s) URL such as http://host:port/path`,
		}},
		{"per topology", map[string]string{
			"PEERBRIDGE_TOPOLOGIES": "a,b", "PEERBRIDGE_PROVIDER": "hcloud", "HCLOUD_TOKEN": "t0kent0ken",
			"PEERBRIDGE_B_HCLOUD_IP_VERSION": "7", "PEERBRIDGE_A_HCLOUD_API_URL": "ftp://x",
		}, []string{
			`PEERBRIDGE_A_HCLOUD_API_URL: "ftp://x" is not an http(s) URL such as http://host:port/path`,
			`PEERBRIDGE_B_HCLOUD_IP_VERSION: "7" is not 4, 6 or both`,
		}},
		{"empty token file", map[string]string{
			"PEERBRIDGE_SERVICE": "x", "PEERBRIDGE_PROVIDER": "hcloud", "HCLOUD_TOKEN_FILE": os.DevNull,
		}, []string{"HCLOUD_TOKEN_FILE: the token file /dev/null is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			_, err := loadConfig()
			if err == nil {
				t.Fatal("loadConfig succeeded")
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}

	t.Run("PEERBRIDGE_HCLOUD_API_URL wins over HCLOUD_ENDPOINT", func(t *testing.T) {
		api := hcloudWorld(t)
		setEnv(t, map[string]string{
			"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PROVIDER": "hcloud", "HCLOUD_TOKEN": hcloudtest.Token,
			"PEERBRIDGE_HCLOUD_API_URL": api.URL(), "HCLOUD_ENDPOINT": "http://127.0.0.1:1/v1",
		})
		var out bytes.Buffer
		if err := NewMain(&out, io.Discard).Run(context.Background(), []string{"check"}); err != nil {
			t.Fatalf("check: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "peers: 3 ") {
			t.Errorf("check:\n%s", out.String())
		}
	})
}
