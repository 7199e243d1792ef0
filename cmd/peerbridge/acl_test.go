package main

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// aclAgent is a Consul agent with ACLs on and default_policy deny, and a
// management client for the test's own setup.
type aclAgent struct {
	*bridgetest.Consul
	root *api.Client
}

func startACLConsul(t *testing.T, extraHCL string) *aclAgent {
	t.Helper()
	const root = "5d1c2b7a-2f7e-4e55-9a0c-6b1f3c8d2e91" // a test's management token, on loopback only
	c := bridgetest.StartConsul(t, fmt.Sprintf(
		`acl { enabled = true, default_policy = "deny", tokens { initial_management = %q, agent = %q } } %s`, root, root, extraHCL))
	client, err := api.NewClient(&api.Config{Address: c.Addr, Token: root})
	if err != nil {
		t.Fatal(err)
	}
	return &aclAgent{Consul: c, root: client}
}

// policyRules fills deploy/consul/policy.hcl as the sed line of the
// Consul reference (bridge/consulpub/README.md) does; TestDocsConsulPolicySed
// runs that line and compares.
func policyRules(t *testing.T, owner, service string) string {
	t.Helper()
	return strings.NewReplacer("<owner>", owner, "<service>", service).Replace(repoFile(t, "deploy/consul/policy.hcl"))
}

// tokenFile makes a token for the policy and writes its secret into a
// file for CONSUL_HTTP_TOKEN_FILE.
func (a *aclAgent) tokenFile(t *testing.T, policy *api.ACLPolicy) (path, secret string) {
	t.Helper()
	tok, _, err := a.root.ACL().TokenCreate(&api.ACLToken{
		Description: "peerbridge test", Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "consul-token")
	if err := os.WriteFile(path, []byte(tok.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tok.SecretID
}

func (a *aclAgent) catalogNodes(t *testing.T, service string) []string {
	t.Helper()
	entries, _, err := a.root.Catalog().Service(service, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, e := range entries {
		nodes = append(nodes, e.Node)
	}
	slices.Sort(nodes)
	return nodes
}

// TestConsulACLPolicy runs two replicas with PEERBRIDGE_HA against a
// Consul that denies by default, with only deploy/consul/policy.hcl's
// permissions, read from CONSUL_HTTP_TOKEN_FILE: the leader takes the
// lock, registers the peers and writes its stamp; both replicas serve
// the set from the catalog.
func TestConsulACLPolicy(t *testing.T) {
	agent := startACLConsul(t, "")
	policy, _, err := agent.root.ACL().PolicyCreate(&api.ACLPolicy{Name: "peerbridge", Rules: policyRules(t, "pb", "web")}, nil)
	if err != nil {
		t.Fatalf("the policy file does not load into Consul: %v", err)
	}
	tokenPath, secret := agent.tokenFile(t, policy)
	setEnv(t, map[string]string{
		"CONSUL_HTTP_ADDR":        agent.Addr,
		"CONSUL_HTTP_TOKEN_FILE":  tokenPath,
		"PEERBRIDGE_SERVICE":      "web",
		"PEERBRIDGE_STATIC_PEERS": "a=127.0.0.1,b=127.0.0.2",
		"PEERBRIDGE_OWNER":        "pb",
		"PEERBRIDGE_HA":           "true",
		"PEERBRIDGE_DNS_ADDR":     "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":    "127.0.0.1:0",
	})
	replicas := []*running{startMain(t), startMain(t)}

	eventually(t, "the peers registered with the policy's token", func() string {
		if got := agent.catalogNodes(t, "web"); !slices.Equal(got, []string{"pb-web-a", "pb-web-b"}) {
			return fmt.Sprintf("nodes %v", got)
		}
		return ""
	})
	lock, _, err := agent.root.KV().Get("peerbridge/leader/pb", nil)
	if err != nil || lock == nil || lock.Session == "" {
		t.Fatalf("the HA lock is not held: %+v %v", lock, err)
	}
	if stamp, _, err := agent.root.KV().Get("peerbridge/leader/pb/stamp", nil); err != nil || stamp == nil {
		t.Fatalf("no leader stamp: %v", err)
	}
	for i, r := range replicas {
		eventually(t, fmt.Sprintf("replica %d serves the set", i), func() string {
			if got := answerA(t, r.dns, "web.peers.internal."); !slices.Equal(got, []string{"127.0.0.1", "127.0.0.2"}) {
				return fmt.Sprintf("A %v", got)
			}
			return ""
		})
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("replica %d logged the token", i)
		}
	}
}

// TestConsulACLPermissionDenied runs with a token whose policy lacks the
// service's write: one clear error naming the permission, counted as
// kind="permission", nothing deleted, DNS serving; once the policy is
// fixed in Consul, the next retry publishes without a restart.
func TestConsulACLPermissionDenied(t *testing.T) {
	agent := startACLConsul(t, "")
	full := policyRules(t, "pb", "web")
	lacking := strings.Replace(full, "service \"web\" {\n  policy = \"write\"", "service \"web\" {\n  policy = \"read\"", 1)
	if lacking == full {
		t.Fatal("the policy file's service rule is not where the test looks for it")
	}
	policy, _, err := agent.root.ACL().PolicyCreate(&api.ACLPolicy{Name: "peerbridge", Rules: lacking}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A node registered by hand under another name must survive.
	if _, err := agent.root.Catalog().Register(&api.CatalogRegistration{Node: "by-hand", Address: "127.0.0.9",
		Service: &api.AgentService{ID: "web-by-hand", Service: "web"}}, nil); err != nil {
		t.Fatal(err)
	}
	tokenPath, secret := agent.tokenFile(t, policy)
	setEnv(t, map[string]string{
		"CONSUL_HTTP_ADDR":        agent.Addr,
		"CONSUL_HTTP_TOKEN_FILE":  tokenPath,
		"PEERBRIDGE_SERVICE":      "web",
		"PEERBRIDGE_STATIC_PEERS": "a=127.0.0.1,b=127.0.0.2",
		"PEERBRIDGE_OWNER":        "pb",
		"PEERBRIDGE_DNS_ADDR":     "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":    "127.0.0.1:0",
	})
	run := startMain(t)
	eventually(t, "a permission failure counted", func() string {
		v, _ := sampleValue(get(t, "http://"+run.http+"/metrics"), `peerbridge_consul_sync_failures_total{kind="permission"}`)
		if v < 1 {
			return fmt.Sprintf("permission failures %v", v)
		}
		return ""
	})
	logs := run.logs.String()
	if !strings.Contains(logs, "Permission denied") || !strings.Contains(logs, "service:write") {
		t.Errorf("the log does not name the missing permission:\n%s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Error("the token is in the log")
	}
	if got := answerA(t, run.dns, "web.peers.internal."); !slices.Equal(got, []string{"127.0.0.1", "127.0.0.2"}) {
		t.Errorf("DNS while Consul refuses: %v", got)
	}
	if got := agent.catalogNodes(t, "web"); !slices.Equal(got, []string{"by-hand"}) {
		t.Errorf("catalog while refused: %v, want only the node registered by hand", got)
	}

	policy.Rules = full
	if _, _, err := agent.root.ACL().PolicyUpdate(policy, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "published once the policy is fixed", func() string {
		if got := agent.catalogNodes(t, "web"); !slices.Equal(got, []string{"by-hand", "pb-web-a", "pb-web-b"}) {
			return fmt.Sprintf("nodes %v", got)
		}
		return ""
	})
	t.Logf("published %s after the policy was fixed", time.Since(start).Round(time.Millisecond))
}

// TestConsulTLS publishes to a Consul that serves its API over HTTPS and
// verifies client certificates (verify_incoming), with the CONSUL_*
// variables consul/api reads; with a CA that did not sign Consul's
// certificate, the error says so and DNS keeps serving.
func TestConsulTLS(t *testing.T) {
	p := newTestPKI(t)
	httpsPort := freePort(t)
	agent := bridgetest.StartConsul(t, fmt.Sprintf(`ports { https = %d }
tls { defaults { ca_file = %q, cert_file = %q, key_file = %q, verify_incoming = true } }`, httpsPort, p.caFile, p.certFile, p.keyFile))
	plain, err := api.NewClient(&api.Config{Address: agent.Addr}) // the test's own view, over the plain port
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"CONSUL_HTTP_ADDR":        fmt.Sprintf("https://127.0.0.1:%d", httpsPort),
		"CONSUL_CLIENT_CERT":      p.clientCert,
		"CONSUL_CLIENT_KEY":       p.clientKey,
		"CONSUL_TLS_SERVER_NAME":  "localhost",
		"PEERBRIDGE_STATIC_PEERS": "a=127.0.0.1,b=127.0.0.2",
		"PEERBRIDGE_OWNER":        "pb",
		"PEERBRIDGE_DNS_ADDR":     "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":    "127.0.0.1:0",
	}

	// Consul really wants a client certificate on its HTTPS port.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost"}}}
	if resp, err := noCert.Get(base["CONSUL_HTTP_ADDR"] + "/v1/catalog/services"); err == nil {
		resp.Body.Close()
		t.Fatalf("Consul answered HTTPS without a client certificate: %s", resp.Status)
	}

	t.Run("mutual TLS", func(t *testing.T) {
		env := maps.Clone(base)
		env["CONSUL_CACERT"], env["PEERBRIDGE_SERVICE"] = p.caFile, "web"
		setEnv(t, env)
		startMain(t)
		eventually(t, "registered over mutual TLS", func() string {
			entries, _, err := plain.Catalog().Service("web", "", nil)
			if err != nil || len(entries) != 2 {
				return fmt.Sprintf("%d entries, %v", len(entries), err)
			}
			return ""
		})
	})

	t.Run("a CA that did not sign Consul's certificate", func(t *testing.T) {
		other := newTestPKI(t)
		env := maps.Clone(base)
		env["CONSUL_CACERT"], env["PEERBRIDGE_SERVICE"] = other.caFile, "db"
		setEnv(t, env)
		run := startMain(t)
		eventually(t, "a failed sync counted", func() string {
			v, _ := sampleValue(get(t, "http://"+run.http+"/metrics"), `peerbridge_consul_sync_failures_total{kind="error"}`)
			if v < 1 {
				return fmt.Sprintf("failures %v", v)
			}
			return ""
		})
		if logs := run.logs.String(); !strings.Contains(logs, "certificate signed by unknown authority") {
			t.Errorf("the log does not say the certificate is not trusted:\n%s", logs)
		}
		if got := answerA(t, run.dns, "db.peers.internal."); !slices.Equal(got, []string{"127.0.0.1", "127.0.0.2"}) {
			t.Errorf("DNS while Consul is not trusted: %v", got)
		}
		if entries, _, _ := plain.Catalog().Service("db", "", nil); len(entries) != 0 {
			t.Errorf("%d entries written through an untrusted connection", len(entries))
		}
	})
}
