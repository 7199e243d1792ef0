package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const (
	stateDir  = "/var/lib/peerbridge"
	statePath = stateDir + "/state.json"
)

// TestDeployKeepsTheStateFile: the image sets PEERBRIDGE_STATE_FILE on a
// volume, and every manifest that runs peerbridge keeps that directory on
// storage that outlives the container, so that a restart answers from
// the saved sets.
func TestDeployKeepsTheStateFile(t *testing.T) {
	d := repoFile(t, "Dockerfile")
	for _, want := range []string{"ENV PEERBRIDGE_STATE_FILE=" + statePath, `VOLUME ["` + stateDir + `"]`, "--chown=65532:65532 /out/state " + stateDir} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	checked := 0
	for _, f := range deployFiles(t) {
		text := repoFile(t, f)
		var errs []error
		switch {
		case strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".yml"):
			docs, err := yamlDocs(text)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, doc := range docs {
				if services, ok := doc["services"].(map[string]any); ok && doc["kind"] == nil {
					if svc, ok := services["peerbridge"].(map[string]any); ok && svc["image"] != nil {
						checked++
						errs = append(errs, checkComposeState(doc, svc)...)
					}
				}
				if doc["kind"] == "Deployment" || doc["kind"] == "StatefulSet" {
					checked++
					errs = append(errs, checkKubeState(doc)...)
				}
			}
		case strings.HasSuffix(f, ".hcl"):
			checked++
			errs = checkNomadState(t, text)
		case strings.HasSuffix(f, ".service"):
			checked++
			for _, want := range []string{"StateDirectory=peerbridge", "Environment=PEERBRIDGE_STATE_FILE=" + statePath} {
				if !strings.Contains(text, "\n"+want+"\n") {
					errs = append(errs, fmt.Errorf("lacks %s", want))
				}
			}
		}
		for _, err := range errs {
			t.Errorf("%s: %v", f, err)
		}
	}
	if checked < 7 {
		t.Fatalf("only %d manifests checked: the walk is broken", checked)
	}
}

func checkComposeState(doc, svc map[string]any) []error {
	vols, _ := svc["volumes"].([]any)
	top, _ := doc["volumes"].(map[string]any)
	for _, v := range vols {
		src, dst, _ := strings.Cut(fmt.Sprint(v), ":")
		if dst == stateDir {
			if _, named := top[src]; !named {
				return []error{fmt.Errorf("%s is mounted from %q, not a named volume", stateDir, src)}
			}
			return nil
		}
	}
	return []error{fmt.Errorf("service peerbridge keeps no volume at %s", stateDir)}
}

func checkKubeState(doc map[string]any) []error {
	spec, _ := doc["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	pod, _ := tmpl["spec"].(map[string]any)
	claims := map[string]bool{}
	if templates, ok := spec["volumeClaimTemplates"].([]any); ok && doc["kind"] == "StatefulSet" {
		for _, c := range templates {
			meta, _ := c.(map[string]any)["metadata"].(map[string]any)
			claims[fmt.Sprint(meta["name"])] = true
		}
	}
	volumes, _ := pod["volumes"].([]any)
	for _, v := range volumes {
		m, _ := v.(map[string]any)
		if m["persistentVolumeClaim"] != nil {
			claims[fmt.Sprint(m["name"])] = true
		}
	}
	containers, _ := pod["containers"].([]any)
	var errs []error
	for _, c := range containers {
		m, _ := c.(map[string]any)
		if !strings.HasPrefix(fmt.Sprint(m["image"]), "peerbridge") {
			continue
		}
		env, _ := m["env"].([]any)
		if !slices.ContainsFunc(env, func(e any) bool {
			em, _ := e.(map[string]any)
			return em["name"] == "PEERBRIDGE_STATE_FILE" && em["value"] == statePath
		}) {
			errs = append(errs, fmt.Errorf("container %v does not set PEERBRIDGE_STATE_FILE=%s", m["name"], statePath))
		}
		mounts, _ := m["volumeMounts"].([]any)
		if !slices.ContainsFunc(mounts, func(v any) bool {
			vm, _ := v.(map[string]any)
			return vm["mountPath"] == stateDir && claims[fmt.Sprint(vm["name"])]
		}) {
			errs = append(errs, fmt.Errorf("container %v keeps %s on no persistent volume claim", m["name"], stateDir))
		}
	}
	return errs
}

func checkNomadState(t *testing.T, text string) []error {
	root, err := parseHCL(text)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, task := range root.find("job", "group", "task") {
		env := task.find("env")
		if len(env) == 0 || env[0].attrs["PEERBRIDGE_STATE_FILE"] != statePath {
			errs = append(errs, fmt.Errorf("task %v does not set PEERBRIDGE_STATE_FILE=%s", task.labels, statePath))
		}
		found := false
		for _, m := range task.find("config", "mount") {
			found = found || (m.attrs["target"] == stateDir && m.attrs["type"] == "volume" && m.attrs["source"] != nil)
		}
		if !found {
			errs = append(errs, fmt.Errorf("task %v keeps %s on no volume", task.labels, stateDir))
		}
	}
	return errs
}
