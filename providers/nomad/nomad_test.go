package nomad

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
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/nomad/nomadtest"
)

const secret = "3f1c2a9e-7b4d-4e1a-9c55-0d6b8e2f7a13" // an ACL token's secret ID

// alloc returns a UUID-shaped allocation id whose first 8 characters
// are a's, so that peer names in tests read well.
func alloc(a string) string { return fmt.Sprintf("%-8s-1111-2222-3333-444455556666", a)[:36] }

// reg is a registration of an allocation of job "app" as Nomad makes
// one: its id names the allocation, and the address is the node's.
func reg(a, ns, dc, addr string, port int, tags ...string) api.ServiceRegistration {
	return api.ServiceRegistration{
		ID:          "_nomad-task-" + alloc(a) + "-group-web-http",
		ServiceName: "web", Namespace: ns, NodeID: "node-" + addr, Datacenter: dc,
		JobID: "app", AllocID: alloc(a), Tags: tags, Address: addr, Port: port,
	}
}

// world is a cluster across two datacenters and three namespaces.
func world() []api.ServiceRegistration {
	return []api.ServiceRegistration{
		reg("aaaaaaaa", "default", "dc1", "10.0.0.1", 20001, "http", "v2"),
		reg("bbbbbbbb", "default", "dc1", "10.0.0.1", 20002, "http", "v2"), // same node, own port
		reg("cccccccc", "default", "dc2", "2001:db8::7", 20003, "http", "v2"),
		reg("dddddddd", "default", "dc2", "10.0.0.4", 20004, "http"), // no v2
		reg("eeeeeeee", "prod", "dc1", "10.1.0.1", 30001, "http", "v2"),
		reg("ffffffff", "staging", "dc1", "10.2.0.1", 30002, "http", "v2"),
		{ID: "db-1", ServiceName: "db", Namespace: "default", AllocID: alloc("99999999"), Address: "10.0.0.9", Port: 5432},
	}
}

func newProvider(t testing.TB, srv *nomadtest.Server, opts Options) *Provider {
	t.Helper()
	opts.Address = srv.URL
	if opts.Service == "" {
		opts.Service = "web"
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// summary renders peers as sorted "name=addr:port ns/dc" lines.
func summary(peers []bridge.Peer) []string {
	var out []string
	for _, p := range peers {
		out = append(out, fmt.Sprintf("%s=%s:%d %s/%s", p.Name, p.Addrs[0], p.Port, p.Attrs["namespace"], p.Attrs["datacenter"]))
	}
	slices.Sort(out)
	return out
}

func TestPeers(t *testing.T) {
	srv := nomadtest.New(t)
	srv.Register(world()...)
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"default namespace, every tag", Options{}, []string{
			"aaaaaaaa=10.0.0.1:20001 default/dc1", "bbbbbbbb=10.0.0.1:20002 default/dc1",
			"cccccccc=2001:db8::7:20003 default/dc2", "dddddddd=10.0.0.4:20004 default/dc2",
		}},
		{"tag filter", Options{Tags: []string{"v2", "http"}}, []string{
			"aaaaaaaa=10.0.0.1:20001 default/dc1", "bbbbbbbb=10.0.0.1:20002 default/dc1",
			"cccccccc=2001:db8::7:20003 default/dc2",
		}},
		{"another namespace", Options{Namespace: "prod"}, []string{"eeeeeeee=10.1.0.1:30001 prod/dc1"}},
		{"every namespace", Options{Namespace: "*", Tags: []string{"v2"}}, []string{
			"aaaaaaaa=10.0.0.1:20001 default/dc1", "bbbbbbbb=10.0.0.1:20002 default/dc1",
			"cccccccc=2001:db8::7:20003 default/dc2", "eeeeeeee=10.1.0.1:30001 prod/dc1",
			"ffffffff=10.2.0.1:30002 staging/dc1",
		}},
		{"a tag nobody has", Options{Namespace: "*", Tags: []string{"v3"}}, nil},
		{"an empty namespace", Options{Namespace: "dev"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers, err := newProvider(t, srv, tc.opts).Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(peers); !slices.Equal(got, tc.want) {
				t.Errorf("peers\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	peers, _ := newProvider(t, srv, Options{}).Peers(context.Background())
	a := peers[slices.IndexFunc(peers, func(p bridge.Peer) bool { return p.Name == "aaaaaaaa" })]
	want := map[string]string{
		"alloc_id": alloc("aaaaaaaa"), "job": "app", "node_id": "node-10.0.0.1", "datacenter": "dc1",
		"namespace": "default", "tags": "http,v2",
	}
	if a.ID != "_nomad-task-"+alloc("aaaaaaaa")+"-group-web-http" || fmt.Sprint(a.Attrs) != fmt.Sprint(want) {
		t.Errorf("peer %+v, want attrs %v", a, want)
	}
}

// TestNamespacesFromTheCatalog: with "*", only the namespaces where the
// catalog has the service are read, and only those the token may read.
func TestNamespacesFromTheCatalog(t *testing.T) {
	srv := nomadtest.New(t)
	srv.Register(world()...)
	srv.ACL(map[string][]string{secret: {"default", "prod"}})
	p := newProvider(t, srv, Options{Namespace: "*", Token: secret, Tags: []string{"v2"}})
	before := srv.Requests()
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(peers); got != 4 {
		t.Errorf("%d peers, want 4 (staging is not the token's): %q", got, summary(peers))
	}
	if n := srv.Requests() - before; n != 3 {
		t.Errorf("%d requests, want 3: the catalog, default and prod", n)
	}
}

// TestSkips: a registration whose address is a host name, or a port out
// of range, is skipped and logged once; the others are peers.
func TestSkips(t *testing.T) {
	srv := nomadtest.New(t)
	bad := reg("11111111", "default", "dc1", "web.example", 80)
	srv.Register(reg("aaaaaaaa", "default", "dc1", "10.0.0.1", 80), bad, reg("22222222", "default", "dc1", "10.0.0.2", 70000))
	var logs bridgetest.Buffer
	p := newProvider(t, srv, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 2 {
		peers, err := p.Peers(context.Background())
		if err != nil || len(peers) != 1 {
			t.Fatalf("%q %v", summary(peers), err)
		}
	}
	if p.Skipped() != 4 || strings.Count(logs.String(), "registration skipped") != 2 {
		t.Errorf("skipped %d, logs:\n%s", p.Skipped(), logs.String())
	}
}

// faultLoop is a loop over p whose polls time out in 5 s (reading the
// 16 MiB of an oversized answer takes seconds under the race detector).
func faultLoop(p bridge.Provider) (*bridge.Loop, *bridgetest.Polls) {
	polls := &bridgetest.Polls{}
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "nomad"},
		Interval: time.Minute, Timeout: 5 * time.Second, Provider: p, Observer: polls,
	})
	return loop, polls
}

// TestFaultsKeepTheSet: after a good poll, every kind of failure is no
// news, classified for the metrics, and never carries the token.
func TestFaultsKeepTheSet(t *testing.T) {
	srv := nomadtest.New(t)
	srv.Register(world()...)
	srv.ACL(map[string][]string{secret: {"*"}})
	p := newProvider(t, srv, Options{Token: secret, Namespace: "*"})
	loop, polls := faultLoop(p)
	loop.Poll(context.Background())
	want := summary(loop.Status().Peers)
	if len(want) != 6 {
		t.Fatalf("first poll: %q %s", want, loop.Status().LastError)
	}
	body := append([]byte("["), bytes.Repeat([]byte(`{"ID":"x"},     `), maxBody/16)...)
	huge := func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("X-Nomad-Index", "9")
		w.Write(body)
		return true
	}
	// The same registration in two namespaces: the listing disagrees
	// with itself.
	twice := func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v1/service/web" {
			return false
		}
		w.Header().Set("X-Nomad-Index", "9")
		fmt.Fprintf(w, `[{"ID":"dup","ServiceName":"web","Namespace":%q,"Address":"10.9.9.9","Port":1,"AllocID":"x"}]`, r.URL.Query().Get("namespace"))
		return true
	}
	echo := func(w http.ResponseWriter, r *http.Request) bool { // a proxy that quotes the request
		http.Error(w, "bad gateway for token "+r.Header.Get("X-Nomad-Token"), http.StatusBadGateway)
		return true
	}
	for _, tc := range []struct {
		name  string
		fault nomadtest.Fault
		acl   map[string][]string
		kind  bridge.FailureKind
		is    error
	}{
		{"500", nomadtest.Status(500, "rpc error: No cluster leader"), nil, bridge.FailureTransient, bridge.ErrTransient},
		{"429", nomadtest.Status(429, "Too many requests"), nil, bridge.FailureRateLimited, bridge.ErrTransient},
		{"403", nil, map[string][]string{secret: {"default"}, "x": {"*"}}, "", nil},
		{"403 catalog", nomadtest.Status(403, api.PermissionDeniedErrorContent), nil, bridge.FailureCredentials, bridge.ErrCredentials},
		{"token revoked", nil, map[string][]string{"other": {"*"}}, bridge.FailureCredentials, bridge.ErrCredentials},
		{"malformed", nomadtest.Malformed(), nil, bridge.FailureTransient, bridge.ErrTransient},
		{"hang", nomadtest.Hang(), nil, bridge.FailureTimeout, context.DeadlineExceeded},
		{"larger than the cap", huge, nil, bridge.FailureTransient, bridge.ErrTransient},
		{"the same id twice", twice, nil, bridge.FailureError, bridge.ErrInconsistentListing},
		{"an echoing proxy", echo, nil, bridge.FailureTransient, bridge.ErrTransient},
		{"a 404", nomadtest.Status(404, "Not found"), nil, bridge.FailureError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetFault(tc.fault)
			if tc.acl != nil {
				srv.ACL(tc.acl)
			}
			defer func() { srv.SetFault(nil); srv.ACL(map[string][]string{secret: {"*"}}) }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := p.Peers(ctx)
			if tc.is == nil && tc.kind == "" {
				// "*" with a token that may read default only: the catalog
				// leaves prod and staging out, a smaller set but no error.
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the token is in the error: %v", err)
			}
			before := polls.Failures(tc.kind)
			loop.Poll(context.Background())
			if polls.Failures(tc.kind) != before+1 {
				t.Errorf("not counted as %s: %s", tc.kind, loop.Status().LastError)
			}
			if got := summary(loop.Status().Peers); !slices.Equal(got, want) {
				t.Errorf("the set changed on a fault: %q", got)
			}
			if strings.Contains(loop.Status().LastError, secret) {
				t.Errorf("the token is in the status: %s", loop.Status().LastError)
			}
		})
	}
}

// TestTokenOnlyToTheAgent: a redirect to another host is refused before
// the token could follow it.
func TestTokenOnlyToTheAgent(t *testing.T) {
	var leaked atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("X-Nomad-Token"))
		w.Header().Set("X-Nomad-Index", "5")
		w.Write([]byte("[]"))
	}))
	defer other.Close()
	srv := nomadtest.New(t)
	srv.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		return true
	})
	_, err := newProvider(t, srv, Options{Token: secret}).Peers(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refusing a redirect") {
		t.Errorf("error %v, want a refused redirect", err)
	}
	if v := leaked.Load(); v != nil {
		t.Errorf("the other host was asked, with token %q", v)
	}
	if tokens := srv.Tokens(); len(tokens) != 1 || tokens[0] != secret {
		t.Errorf("the agent saw tokens %q", tokens)
	}
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	vendor := []string{"NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_TOKEN_FILE", "NOMAD_NAMESPACE", "NOMAD_REGION",
		"NOMAD_CACERT", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "NOMAD_TLS_SERVER_NAME"}
	if !slices.Equal(vendor, Info.VendorVars) {
		t.Errorf("Info.VendorVars %q", Info.VendorVars)
	}
	for _, tc := range []struct {
		name string
		env  Env
		vars map[string]string
		want Options
		errs []string // setting or variable names, in order
	}{
		{"defaults", Env{NomadService: "web"}, nil,
			Options{Address: DefaultAddress, Namespace: "default", Service: "web"}, nil},
		{"the CLI's variables", Env{NomadService: "web", NomadTags: " http, v2,,http"},
			map[string]string{"NOMAD_ADDR": "https://nomad.service:4646", "NOMAD_TOKEN": secret, "NOMAD_NAMESPACE": "prod", "NOMAD_REGION": "eu", "NOMAD_TLS_SERVER_NAME": "server.eu.nomad"},
			Options{Address: "https://nomad.service:4646", Token: secret, TokenFrom: "NOMAD_TOKEN", Namespace: "prod", Region: "eu", Service: "web", Tags: []string{"http", "v2"}, TLSServerName: "server.eu.nomad"}, nil},
		{"own namespace wins, token file", Env{NomadService: "web", NomadNamespace: "*"},
			map[string]string{"NOMAD_NAMESPACE": "prod", "NOMAD_TOKEN_FILE": tokenFile, "NOMAD_ADDR": "unix:///secrets/api.sock"},
			Options{Address: "unix:///secrets/api.sock", Token: secret, TokenFrom: "NOMAD_TOKEN_FILE", Namespace: "*", Service: "web"}, nil},
		{"everything wrong", Env{NomadNamespace: "a b"},
			map[string]string{"NOMAD_ADDR": "nomad:4646", "NOMAD_TOKEN_FILE": empty, "NOMAD_CACERT": tokenFile, "NOMAD_CLIENT_CERT": tokenFile, "NOMAD_REGION": "eu west"},
			Options{}, []string{"NOMAD_ADDR", "NOMAD_SERVICE", "NOMAD_NAMESPACE", "NOMAD_REGION", "NOMAD_TOKEN_FILE", "NOMAD_CACERT", "NOMAD_CLIENT_KEY"}},
		{"bad service, vendor namespace", Env{NomadService: "web_1"}, map[string]string{"NOMAD_NAMESPACE": "x/y", "NOMAD_TOKEN": "a\nb"},
			Options{}, []string{"NOMAD_SERVICE", "NOMAD_NAMESPACE", "NOMAD_TOKEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range vendor {
				t.Setenv(v, tc.vars[v])
			}
			opts, err := Configure(tc.env)
			var names []string
			for _, se := range bridge.SettingErrors(err) {
				names = append(names, se.Setting)
			}
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) {
				for _, e := range joined.Unwrap() {
					if ve := (*bridge.VariableError)(nil); errors.As(e, &ve) {
						names = append(names, ve.Variable)
					}
				}
			}
			slices.Sort(names)
			wantNames := slices.Sorted(slices.Values(tc.errs))
			if !slices.Equal(names, wantNames) {
				t.Errorf("errors %q, want %q: %v", names, wantNames, err)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the token is in the error: %v", err)
			}
			if tc.errs != nil {
				return
			}
			if fmt.Sprint(opts) != fmt.Sprint(tc.want) {
				t.Errorf("options\n%+v\nwant\n%+v", opts, tc.want)
			}
			if _, err := New(opts); err != nil {
				t.Errorf("New: %v", err)
			}
			if attrs := fmt.Sprint(opts.LogAttrs()); strings.Contains(attrs, secret) || !strings.Contains(attrs, "token_from") {
				t.Errorf("log attrs %s", attrs)
			}
		})
	}
}

// pki is a throwaway CA and certificates signed by it, in PEM files.
type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	dir    string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	k := &pki{dir: t.TempDir()}
	k.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Nomad Agent CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.caKey.PublicKey, k.caKey)
	if err != nil {
		t.Fatal(err)
	}
	k.ca, _ = x509.ParseCertificate(der)
	k.caFile = k.write(t, "ca.pem", "CERTIFICATE", der)
	return k
}

func (k *pki) write(t *testing.T, name, kind string, der []byte) string {
	path := filepath.Join(k.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns a certificate for name (a server's DNS name, or a client)
// and its key.
func (k *pki) issue(t *testing.T, name string, serial int64, usage x509.ExtKeyUsage) (tls.Certificate, string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.ca, &key.PublicKey, k.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile := k.write(t, name+".pem", "CERTIFICATE", der)
	keyFile := k.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// TestTLS reaches an agent over HTTPS as the CLI's variables say: its CA
// in NOMAD_CACERT, its name in NOMAD_TLS_SERVER_NAME (Nomad's
// server.<region>.nomad), and a client certificate it requires.
func TestTLS(t *testing.T) {
	k := newPKI(t)
	serverCert, _, _ := k.issue(t, "server.global.nomad", 2, x509.ExtKeyUsageServerAuth)
	_, clientCert, clientKey := k.issue(t, "cli.global.nomad", 3, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(k.ca)
	srv := nomadtest.NewTLS(t, func(s *httptest.Server) {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
		s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below are meant
	})
	srv.Register(world()...)
	t.Setenv("NOMAD_ADDR", srv.URL)
	t.Setenv("NOMAD_CACERT", k.caFile)
	t.Setenv("NOMAD_TLS_SERVER_NAME", "server.global.nomad")
	t.Setenv("NOMAD_CLIENT_CERT", clientCert)
	t.Setenv("NOMAD_CLIENT_KEY", clientKey)
	for _, v := range []string{"NOMAD_TOKEN", "NOMAD_TOKEN_FILE", "NOMAD_NAMESPACE", "NOMAD_REGION"} {
		t.Setenv(v, "")
	}
	opts, err := Configure(Env{NomadService: "web"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if peers, err := p.Peers(context.Background()); err != nil || len(peers) != 4 {
		t.Fatalf("over TLS: %q %v", summary(peers), err)
	}

	// Without the client certificate the agent refuses the handshake; with
	// the wrong server name the client refuses the agent.
	noClient := opts
	noClient.ClientCert, noClient.ClientKey = "", ""
	wrongName := opts
	wrongName.TLSServerName = "client.global.nomad"
	for name, o := range map[string]Options{"no client certificate": noClient, "wrong server name": wrongName} {
		p, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrTransient) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTaskAPISocket reads Nomad through a unix socket, as a task does
// with NOMAD_ADDR=unix://${NOMAD_SECRETS_DIR}/api.sock and its workload
// identity's token.
func TestTaskAPISocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv := nomadtest.NewUnix(t, sock)
	srv.Register(world()...)
	srv.ACL(map[string][]string{secret: {"default"}})
	p, err := New(Options{Address: "unix://" + sock, Token: secret, Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if peers, err := p.Peers(context.Background()); err != nil || len(peers) != 4 {
		t.Fatalf("over the socket: %q %v", summary(peers), err)
	}
	if p.Requests() != 1 {
		t.Errorf("%d requests counted, want 1", p.Requests())
	}
}

func TestNewRejects(t *testing.T) {
	for name, o := range map[string]Options{
		"no service":     {},
		"bad namespace":  {Service: "web", Namespace: "a/b"},
		"wait too long":  {Service: "web", Wait: time.Hour},
		"no scheme":      {Service: "web", Address: "nomad:4646"},
		"token newline":  {Service: "web", Token: "a\nb"},
		"cert, no key":   {Service: "web", ClientCert: "/nonexistent/cert.pem"},
		"missing cacert": {Service: "web", CACert: "/nonexistent/ca.pem"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	attrs := fmt.Sprint(Options{Service: "web", Address: "https://user:pw@nomad:4646", Token: secret, TokenFrom: "NOMAD_TOKEN_FILE"}.LogAttrs())
	if strings.Contains(attrs, secret) || strings.Contains(attrs, "pw") || !strings.Contains(attrs, "token_from NOMAD_TOKEN_FILE") {
		t.Errorf("log attrs %s", attrs)
	}
}
