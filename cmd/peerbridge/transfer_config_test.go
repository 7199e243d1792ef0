package main

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/peerbridge/peerbridge/dnsserver"
)

func TestTransferConfig(t *testing.T) {
	// A key for this test only; it guards nothing.
	const secret = "dGhpcy1pcy10aGUtdGVzdC1zZWNyZXQtdmFsdWU="
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":            "web",
		"PEERBRIDGE_STATIC_PEERS":       "a=10.0.0.1",
		"PEERBRIDGE_DNS_TRANSFER_ALLOW": "10.0.0.7, 10.0.1.0/24",
		"PEERBRIDGE_DNS_NOTIFY":         "10.0.0.7:53",
		"PEERBRIDGE_DNS_TSIG_KEY":       "xfr:hmac-sha256:" + secret,
		"PEERBRIDGE_DNS_NS":             "ns1.peers.internal=10.0.0.7,ns2.example.com",
	})
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.dns.Transfer
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.7/32"), netip.MustParsePrefix("10.0.1.0/24")}; !slices.Equal(tr.Allow, want) {
		t.Errorf("allow %v, want %v", tr.Allow, want)
	}
	if tr.Key == nil || tr.Key.Name != "xfr." || len(tr.Notify) != 1 || len(cfg.dns.NS) != 2 {
		t.Errorf("transfer %+v, ns %v", tr, cfg.dns.NS)
	}
	if _, err := dnsserver.New(cfg.dns); err != nil {
		t.Errorf("New: %v", err)
	}
	var logs bytes.Buffer
	newLogger(&logs, slog.LevelInfo, "json").Info("config", "config", cfg.logValue())
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("the effective configuration shows the TSIG secret: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"name":"xfr."`) || !strings.Contains(logs.String(), `"algorithm":"hmac-sha256"`) {
		t.Errorf("the log does not name the key: %s", logs.String())
	}
}

func TestTransferConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad allow", map[string]string{"PEERBRIDGE_DNS_TRANSFER_ALLOW": "10.0.0.7,nope"}, `PEERBRIDGE_DNS_TRANSFER_ALLOW: "nope" is not an IP or CIDR`},
		{"bad notify", map[string]string{"PEERBRIDGE_DNS_NOTIFY": "10.0.0.7"}, `PEERBRIDGE_DNS_NOTIFY: "10.0.0.7" is not host:port`},
		{"bad key", map[string]string{"PEERBRIDGE_DNS_TSIG_KEY": "xfr:hmac-sha256:s3cr3t!"}, "PEERBRIDGE_DNS_TSIG_KEY: the secret is not base64"},
		{"glue outside the zone", map[string]string{"PEERBRIDGE_DNS_NS": "ns.example.com=10.0.0.7"}, "PEERBRIDGE_DNS_NS: name server ns.example.com. has addresses but is outside"},
		{"name server inside a service", map[string]string{"PEERBRIDGE_DNS_NS": "ns.web.peers.internal=10.0.0.7"}, `PEERBRIDGE_DNS_NS: ns.web.peers.internal. is inside the names of service "web"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["PEERBRIDGE_SERVICE"] = "web"
			tc.env["PEERBRIDGE_STATIC_PEERS"] = "a=10.0.0.1"
			setEnv(t, tc.env)
			_, err := loadConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
