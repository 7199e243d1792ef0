package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// testPKI is a CA made for one test, with a server certificate for
// 127.0.0.1 and a client certificate, written as PEM files into dir.
type testPKI struct {
	dir                           string
	caFile, certFile, keyFile     string
	clientCert, clientKey, caPool string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peerbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ip bool) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if ip {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	sc, sk := issue("127.0.0.1", 2, x509.ExtKeyUsageServerAuth, true)
	p.certFile, p.keyFile = write("server.pem", sc), write("server-key.pem", sk)
	cc, ck := issue("prometheus", 3, x509.ExtKeyUsageClientAuth, false)
	p.clientCert, p.clientKey = write("client.pem", cc), write("client-key.pem", ck)
	if p.client, err = tls.X509KeyPair(cc, ck); err != nil {
		t.Fatal(err)
	}
	return p
}

// webTestPassword is the password the tests' web configurations accept
// for user "prometheus" (a test value, hashed with bcrypt's minimum cost).
const webTestPassword = "scrape-me-test-only"

func writeWebConfig(t *testing.T, p *testPKI, clientAuth string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(webTestPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`tls_server_config:
  cert_file: server.pem
  key_file: server-key.pem
  client_auth_type: %s
  client_ca_file: ca.pem
basic_auth_users:
  prometheus: %s
`, clientAuth, hash)
	path := filepath.Join(p.dir, "web.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestWebConfig serves every endpoint over TLS with basic auth from an
// exporter-toolkit web configuration: the data endpoints want the
// password, the probes answer without one over the same TLS, plain HTTP
// gets nothing, and `peerbridge health` still works.
func TestWebConfig(t *testing.T) {
	p := newTestPKI(t)
	webFile := writeWebConfig(t, p, "VerifyClientCertIfGiven")
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":         "web",
		"PEERBRIDGE_STATIC_PEERS":    "a=127.0.0.1,b=127.0.0.2",
		"PEERBRIDGE_DNS_ADDR":        "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":       "127.0.0.1:0",
		"PEERBRIDGE_WEB_CONFIG_FILE": webFile,
	})
	run := startMain(t)
	base := "https://" + run.http
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}},
	}}
	do := func(path, user, pass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/metrics", "/status", "/sd/prometheus"} {
		if code, _ := do(path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a password: %d, want 401", path, code)
		}
		if code, _ := do(path, "prometheus", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d, want 401", path, code)
		}
		if code, _ := do(path, "nobody", webTestPassword); code != http.StatusUnauthorized {
			t.Errorf("%s as an unknown user: %d, want 401", path, code)
		}
		if code, body := do(path, "prometheus", webTestPassword); code != http.StatusOK || len(body) == 0 {
			t.Errorf("%s with the password: %d %q", path, code, body)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := do("/readyz", "", "")
		if code == http.StatusOK && strings.TrimSpace(body) == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz without a password: %d %q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := do("/healthz", "", ""); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz without a password: %d %q", code, body)
	}

	// Without TLS nothing is served but Go's own refusal.
	if resp, err := http.Get("http://" + run.http + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "peerbridge_") {
			t.Errorf("plain HTTP got %d %.80q", resp.StatusCode, b)
		}
	}

	// The image's HEALTHCHECK: no password, HTTPS because the file says TLS.
	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	t.Setenv("PEERBRIDGE_HTTP_ADDR", run.http)
	if err := m.Run(context.Background(), []string{"health"}); err != nil || strings.TrimSpace(out.String()) != "ok" {
		t.Errorf("peerbridge health with TLS: %v, %q %q", err, out.String(), errOut.String())
	}
}

// TestWebConfigInvalid: a file the toolkit rejects is a start-up error
// naming the variable.
func TestWebConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"plain password": "basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n",
		"unknown key":    "tls_server_config:\n  cert_fil: x.pem\n",
		"missing cert":   "tls_server_config:\n  cert_file: nowhere.pem\n  key_file: nowhere-key.pem\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yml")
		os.WriteFile(path, []byte(body), 0o600)
		setEnv(t, map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_WEB_CONFIG_FILE": path})
		_, err := loadConfig()
		if err == nil || !strings.Contains(err.Error(), "PEERBRIDGE_WEB_CONFIG_FILE: ") {
			t.Errorf("%s: %v; want an error naming PEERBRIDGE_WEB_CONFIG_FILE", name, err)
		}
	}
	setEnv(t, map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_WEB_CONFIG_FILE": filepath.Join(dir, "absent.yml")})
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "PEERBRIDGE_WEB_CONFIG_FILE: ") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestPrometheusWebConfig runs the real Prometheus against a bridge whose
// endpoints need TLS with a client certificate and basic auth: it scrapes
// /metrics and discovers the peers through /sd/prometheus with the
// tls_config and basic_auth it uses for any exporter.
func TestPrometheusWebConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Prometheus")
	}
	bridgetest.RequireTool(t, "prometheus", "apt-get install prometheus")
	p := newTestPKI(t)
	webFile := writeWebConfig(t, p, "RequireAndVerifyClientCert")
	httpPort := freePort(t)
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":         "web",
		"PEERBRIDGE_STATIC_PEERS":    "a=127.0.0.1,b=127.0.0.2",
		"PEERBRIDGE_PORT":            "9100",
		"PEERBRIDGE_DNS_ADDR":        "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":       "127.0.0.1:" + strconv.Itoa(httpPort),
		"PEERBRIDGE_WEB_CONFIG_FILE": webFile,
	})
	run := startMain(t)
	passFile := filepath.Join(p.dir, "password")
	os.WriteFile(passFile, []byte(webTestPassword), 0o600)
	auth := fmt.Sprintf(`
    scheme: https
    basic_auth: {username: prometheus, password_file: %[1]s}
    tls_config: {ca_file: %[2]s, cert_file: %[3]s, key_file: %[4]s}`, passFile, p.caFile, p.clientCert, p.clientKey)
	prom := startPrometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: peerbridge%[2]s
    static_configs:
      - targets: ['%[1]s']
  - job_name: peers
    http_sd_configs:
      - url: https://%[1]s/sd/prometheus
        refresh_interval: 1s
        basic_auth: {username: prometheus, password_file: %[3]s}
        tls_config: {ca_file: %[4]s, cert_file: %[5]s, key_file: %[6]s}
`, run.http, auth, passFile, p.caFile, p.clientCert, p.clientKey))

	eventually(t, "peerbridge scraped over TLS with basic auth", func() string {
		if r := prom.query(t, `peerbridge_peers_published{job="peerbridge"} == 2`); len(r) != 1 {
			return fmt.Sprintf("peers_published: %v", r)
		}
		return ""
	})
	want := []string{
		"127.0.0.1:9100 topology=web peer=a id=a region= addresses=127.0.0.1",
		"127.0.0.2:9100 topology=web peer=b id=b region= addresses=127.0.0.2",
	}
	eventually(t, "peers discovered through /sd/prometheus", func() string {
		if got := summaries(prom.targets(t, "peers")); !equalStrings(got, want) {
			return fmt.Sprintf("\n got  %q\n want %q", got, want)
		}
		return ""
	})
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}
