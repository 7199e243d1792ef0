package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployProbesScheme: every Kubernetes container in deploy/ probes
// over HTTPS exactly when it sets PEERBRIDGE_WEB_CONFIG_FILE (whose
// example turns TLS on), since peerbridge then serves nothing over plain
// HTTP; and such a probe sends no password, which /healthz and /readyz do
// not ask for.
func TestDeployProbesScheme(t *testing.T) {
	probes := 0
	for _, f := range deployFiles(t) {
		if !strings.HasSuffix(f, ".yaml") && !strings.HasSuffix(f, ".yml") {
			continue
		}
		docs, err := yamlDocs(repoFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, doc := range docs {
			for _, c := range containers(doc) {
				tls := false
				for _, e := range list(c["env"]) {
					if m, ok := e.(map[string]any); ok && m["name"] == "PEERBRIDGE_WEB_CONFIG_FILE" {
						tls = true
					}
				}
				for _, kind := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
					probe, _ := c[kind].(map[string]any)
					get, _ := probe["httpGet"].(map[string]any)
					if get == nil {
						continue
					}
					probes++
					scheme, _ := get["scheme"].(string)
					if tls != (scheme == "HTTPS") {
						t.Errorf("%s: %s has scheme %q with PEERBRIDGE_WEB_CONFIG_FILE set: %v", f, kind, scheme, tls)
					}
					if _, auth := get["httpHeaders"]; auth {
						t.Errorf("%s: %s sends headers; the probes need no password", f, kind)
					}
				}
			}
		}
	}
	if probes < 6 {
		t.Fatalf("only %d probes found in deploy/: the walk is broken", probes)
	}
}

// containers returns a manifest's pod containers (Deployment, DaemonSet,
// StatefulSet, Pod).
func containers(doc map[string]any) []map[string]any {
	spec, _ := doc["spec"].(map[string]any)
	if tmpl, ok := spec["template"].(map[string]any); ok {
		spec, _ = tmpl["spec"].(map[string]any)
	}
	var out []map[string]any
	for _, c := range list(spec["containers"]) {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func list(v any) []any { l, _ := v.([]any); return l }

// TestDeployWebConfigExample loads deploy/kubernetes/web-config.yml as
// peerbridge does at start, beside a certificate and key such as the
// Secret mounts: the example is valid for exporter-toolkit and turns TLS
// and passwords on.
func TestDeployWebConfigExample(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	for from, to := range map[string]string{p.certFile: "tls.crt", p.keyFile: "tls.key", p.caFile: "ca.crt"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, to), b, 0o600)
	}
	path := filepath.Join(dir, "web-config.yml")
	os.WriteFile(path, []byte(repoFile(t, "deploy/kubernetes/web-config.yml")), 0o600)
	w, err := loadWebConfig(path)
	if err != nil {
		t.Fatalf("the example web configuration: %v", err)
	}
	c, _ := w.current()
	if !w.tlsEnabled() || len(c.Users) == 0 {
		t.Errorf("the example turns on TLS %v and %d users; want both", w.tlsEnabled(), len(c.Users))
	}
}
