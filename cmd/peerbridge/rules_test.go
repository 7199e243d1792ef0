package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// TestAlertRules checks deploy/prometheus's rules with promtool, and
// unit-tests the stale-set alert: it fires for a set older than ten
// intervals, and not for a fresh one.
func TestAlertRules(t *testing.T) {
	promtool := bridgetest.RequireTool(t, "promtool", "apt-get install prometheus")
	rules, err := filepath.Abs("../../deploy/prometheus/peerbridge.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests := `rule_files: ["` + rules + `"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'peerbridge_topology_set_age_seconds{topology="web",provider="droplet",instance="a"}'
        values: '30+60x10'
      - series: 'peerbridge_poll_interval_seconds{topology="web",provider="droplet",instance="a"}'
        values: '10x10'
      - series: 'peerbridge_topology_set_age_seconds{topology="api",provider="hcloud",instance="a"}'
        values: '5x10'
      - series: 'peerbridge_poll_interval_seconds{topology="api",provider="hcloud",instance="a"}'
        values: '10x10'
    alert_rule_test:
      - eval_time: 1m
        alertname: PeerbridgePeerSetStale
        exp_alerts: []
      - eval_time: 5m
        alertname: PeerbridgePeerSetStale
        exp_alerts:
          - exp_labels: {severity: warning, topology: web, provider: droplet, instance: a}
            exp_annotations:
              summary: "peerbridge topology web serves a peer set older than ten poll intervals"
              description: "The droplet set of web on a was last confirmed 5m 30s ago; DNS still answers with it. See peerbridge_poll_failures_total and /status for the polls' errors."
`
	path := filepath.Join(t.TempDir(), "rules_test.yml")
	if err := os.WriteFile(path, []byte(tests), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "test", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
