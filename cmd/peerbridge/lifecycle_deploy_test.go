package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSystemdSocketVerifies: the socket unit and the service it starts
// pass systemd-analyze verify together.
func TestSystemdSocketVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	service := strings.ReplaceAll(repoFile(t, "deploy/systemd/peerbridge.service"), "/usr/local/bin/peerbridge", os.Args[0])
	for name, text := range map[string]string{"peerbridge.service": service, "peerbridge.socket": repoFile(t, "deploy/systemd/peerbridge.socket")} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "peerbridge.socket"), filepath.Join(dir, "peerbridge.service")).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdSocketOrder: the socket unit's Listen lines are in the order
// peerbridge takes unnamed sockets, on the default ports.
func TestSystemdSocketOrder(t *testing.T) {
	defaults := func(field string) string {
		f, ok := reflect.TypeOf(GlobalEnv{}).FieldByName(field)
		if !ok {
			t.Fatalf("GlobalEnv has no %s", field)
		}
		return strings.TrimPrefix(f.Tag.Get("default"), ":")
	}
	dnsPort, httpPort := defaults("DNSAddr"), defaults("HTTPAddr")
	want := []string{"ListenDatagram=" + dnsPort, "ListenStream=" + dnsPort, "ListenStream=" + httpPort}
	var got []string
	for _, line := range strings.Split(repoFile(t, "deploy/systemd/peerbridge.socket"), "\n") {
		if strings.HasPrefix(line, "Listen") {
			got = append(got, strings.TrimSpace(line))
		}
		if strings.HasPrefix(line, "FileDescriptorName=") {
			t.Errorf("%s names every socket alike: peerbridge would then take them in order anyway", line)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Listen lines %q, want %q (the order %v)", got, want, fdOrder)
	}
}

// TestKubernetesDisruptionBudget: a Deployment or StatefulSet of several
// replicas has a PodDisruptionBudget for its pods that lets a drain take one at a time.
func TestKubernetesDisruptionBudget(t *testing.T) {
	checked := 0
	for _, f := range deployFiles(t) {
		if !strings.HasSuffix(f, ".yaml") {
			continue
		}
		docs, err := yamlDocs(repoFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pdbs := map[string]int{} // selector -> minAvailable
		type deployment struct {
			selector string
			replicas int
		}
		var deps []deployment
		for _, doc := range docs {
			spec, _ := doc["spec"].(map[string]any)
			sel, _ := spec["selector"].(map[string]any)
			labels := labelsKey(sel["matchLabels"])
			switch doc["kind"] {
			case "Deployment", "StatefulSet":
				n, _ := spec["replicas"].(int)
				deps = append(deps, deployment{labels, n})
			case "PodDisruptionBudget":
				n, _ := spec["minAvailable"].(int)
				pdbs[labels] = n
			}
		}
		for _, d := range deps {
			if d.replicas < 2 {
				continue // a budget would block every drain
			}
			checked++
			min, ok := pdbs[d.selector]
			if !ok {
				t.Errorf("%s: a workload of %d replicas (%s) has no PodDisruptionBudget", f, d.replicas, d.selector)
			} else if min < 1 || min >= d.replicas {
				t.Errorf("%s: minAvailable %d of %d replicas: want at least 1 and fewer than all", f, min, d.replicas)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no workload of several replicas found: the walk is broken")
	}
}

func labelsKey(v any) string {
	m, _ := v.(map[string]any)
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v.(string))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
