package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"gopkg.in/yaml.v3"
)

// repoFile reads a file from the top of the repository.
func repoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func deployFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("../../deploy", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, strings.TrimPrefix(path, "../../"))
		}
		return err
	})
	if err != nil || len(files) < 8 {
		t.Fatalf("deploy files %v, %v", files, err)
	}
	return files
}

func TestDeployYAMLParses(t *testing.T) {
	for _, f := range deployFiles(t) {
		if !strings.HasSuffix(f, ".yml") && !strings.HasSuffix(f, ".yaml") {
			continue
		}
		docs, err := yamlDocs(repoFile(t, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		} else if len(docs) == 0 {
			t.Errorf("%s: no YAML document", f)
		}
	}
}

// envNameRE matches the names of every variable spec envSpecs lists.
var envNameRE = func() *regexp.Regexp {
	prefixes := []string{envPrefix}
	for _, s := range envSpecs()[2:] {
		prefixes = append(prefixes, s.prefix)
	}
	return regexp.MustCompile(`\b(?:` + strings.Join(prefixes, "|") + `)_[A-Z0-9_]*[A-Z0-9]\b`)
}()

// envSpecs are the specs of every variable help lists: the global ones,
// the topologies' (index 1), and the providers' vendor variables.
func envSpecs() []struct {
	prefix string
	spec   any
} {
	specs := []struct {
		prefix string
		spec   any
	}{{envPrefix, &GlobalEnv{}}, {envPrefix, newTopologyEnv().spec()}}
	for _, p := range providers {
		if p.vendor != nil {
			specs = append(specs, struct {
				prefix string
				spec   any
			}{p.vendor.prefix, p.vendor.spec})
		}
	}
	return specs
}

// TestDeployEnvNames checks that every variable the examples, the
// Dockerfile and the documents (README.md and every reference) set is one
// the binary reads.
func TestDeployEnvNames(t *testing.T) {
	known := map[string]bool{
		// Switches of the tests, the bench script and .ci/run, documented for developers.
		"PEERBRIDGE_CONSUL_BIN": true, "PEERBRIDGE_COREDNS_BIN": true, "PEERBRIDGE_BENCH_SERVER_PEERS": true,
		"PEERBRIDGE_CI_THP": true,
	}
	var topoKeys []string
	for i, spec := range envSpecs() {
		keys, err := envKeys(spec.prefix, spec.spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			known[k] = true
		}
		if i == 1 {
			topoKeys = keys
		}
	}
	// PEERBRIDGE_<TOPOLOGY>_<KEY> is known when <KEY> is a topology key.
	perTopology := func(name string) bool {
		for _, k := range topoKeys {
			suffix := strings.TrimPrefix(k, envPrefix)
			if strings.HasSuffix(name, suffix) && len(name) > len(k) {
				return true
			}
		}
		return false
	}
	files := append(append(deployFiles(t), "Dockerfile"), markdownFiles(t)...)
	seen := 0
	for _, f := range files {
		for _, name := range envNameRE.FindAllString(repoFile(t, f), -1) {
			seen++
			if !known[name] && !perTopology(name) {
				t.Errorf("%s sets %s, which peerbridge does not read", f, name)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("only %d variable names found: the pattern is broken", seen)
	}
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	// verify wants ExecStart to exist: point it at a real file.
	unit := strings.ReplaceAll(repoFile(t, "deploy/systemd/peerbridge.service"), "/usr/local/bin/peerbridge", os.Args[0])
	path := filepath.Join(t.TempDir(), "peerbridge.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// It exits 0 on unknown keys and bad values, with a warning.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestDockerfile(t *testing.T) {
	d := repoFile(t, "Dockerfile")
	for _, want := range []string{
		"AS build", "CGO_ENABLED=0", "./cmd/peerbridge", "GOTOOLCHAIN=local",
		"EXPOSE 8653/udp 8653/tcp 8654/tcp", `HEALTHCHECK`, `"/peerbridge", "health"`,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// The rules every file in deploy/ and the Dockerfile keep, as a user would
// meet them: Kubernetes refuses runAsNonRoot with a user name, a Secret in
// an applied file overwrites the real token, a ConfigMap named coredns
// replaces the cluster's Corefile, and :latest is pulled again on every
// start.

// dockerfile is what the rules need of a Dockerfile: every stage's base
// image and the final stage's USER.
type dockerfile struct {
	froms []string
	user  string
}

func parseDockerfile(text string) dockerfile {
	var d dockerfile
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			d.froms = append(d.froms, fields[1])
			d.user = "" // a new stage starts as root
		case "USER":
			d.user = fields[1]
		}
	}
	return d
}

var numericUserRE = regexp.MustCompile(`^([0-9]+)(?::([0-9]+))?$`)

// numericNonRoot checks a USER value and returns its uid and gid.
func numericNonRoot(user string) (uid, gid int, err error) {
	m := numericUserRE.FindStringSubmatch(user)
	if m == nil {
		return 0, 0, fmt.Errorf("USER %q is not numeric uid:gid, so Kubernetes cannot check runAsNonRoot (\"image has non-numeric user\")", user)
	}
	uid, _ = strconv.Atoi(m[1])
	gid = uid
	if m[2] != "" {
		gid, _ = strconv.Atoi(m[2])
	}
	if uid == 0 || gid == 0 {
		return 0, 0, fmt.Errorf("USER %q is root", user)
	}
	return uid, gid, nil
}

// pinnedImage checks that an image reference names a tag other than
// latest, or a digest.
func pinnedImage(ref string) error {
	if strings.Contains(ref, "@sha256:") {
		return nil
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok:
		return fmt.Errorf("image %q has no tag: it means latest", ref)
	case tag == "latest":
		return fmt.Errorf("image %q is :latest: pin a tag", ref)
	}
	return nil
}

func TestDeployRulesDetect(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"named user", second(numericNonRoot("nonroot:nonroot")), true},
		{"root by number", second(numericNonRoot("0:0")), true},
		{"root group", second(numericNonRoot("65532:0")), true},
		{"numeric", second(numericNonRoot("65532:65532")), false},
		{"latest", pinnedImage("peerbridge:latest"), true},
		{"no tag", pinnedImage("peerbridge"), true},
		{"registry port, no tag", pinnedImage("registry:5000/peerbridge"), true},
		{"tag", pinnedImage("registry:5000/peerbridge:0.1.0"), false},
		{"digest", pinnedImage("peerbridge@sha256:0123"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.err != nil) != tc.want {
				t.Errorf("error %v, want an error: %v", tc.err, tc.want)
			}
		})
	}
	t.Run("yaml", func(t *testing.T) {
		bad := `
apiVersion: v1
kind: Secret
metadata: {name: t}
stringData: {token: REPLACE_ME}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data: {Corefile: ".:53 {}"}
---
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      securityContext: {runAsNonRoot: true}
      containers: [{name: a, image: "a:latest"}]
`
		errs := checkManifest(t, "bad.yaml", bad, 65532, 65532)
		if len(errs) != 5 {
			t.Errorf("%d errors, want 5 (secret, configmap, runAsUser, runAsGroup, latest):\n%v", len(errs), errs)
		}
	})
	t.Run("hcl", func(t *testing.T) {
		errs := checkNomad(t, `job "j" { group "g" { task "t" { user = "root"
			config { image = "x:latest" } } } }`)
		if len(errs) != 2 {
			t.Errorf("%d errors, want 2 (root, latest): %v", len(errs), errs)
		}
	})
	t.Run("systemd", func(t *testing.T) {
		errs := checkSystemd(t, "[Service]\nExecStart=/bin/x\nUser=root\n")
		if len(errs) != 2 {
			t.Errorf("%d errors, want 2 (root, no [Install]): %v", len(errs), errs)
		}
	})
}

func second[T any](_, _ T, err error) error { return err }

func TestDeployRules(t *testing.T) {
	d := parseDockerfile(repoFile(t, "Dockerfile"))
	uid, gid, err := numericNonRoot(d.user)
	if err != nil {
		t.Errorf("Dockerfile: %v", err)
	}
	for _, from := range d.froms {
		if err := pinnedImage(from); err != nil {
			t.Errorf("Dockerfile: FROM %v", err)
		}
	}
	// The build stage's Go is go.mod's, as GOTOOLCHAIN=local demands.
	goVersion := ""
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(repoFile(t, "go.mod")); m != nil {
		goVersion = m[1]
	}
	if goVersion == "" || len(d.froms) == 0 || !strings.HasPrefix(d.froms[0], "golang:"+goVersion+"-") {
		t.Errorf("Dockerfile: build stage FROM %v, want golang:%s-... (go.mod's go line)", d.froms, goVersion)
	}

	checked := 0
	for _, f := range deployFiles(t) {
		text := repoFile(t, f)
		var errs []error
		switch {
		case strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".yml"):
			errs = checkManifest(t, f, text, uid, gid)
		case f == "deploy/consul/policy.hcl":
			continue // loaded into a real Consul by TestConsulACLPolicy
		case f == "deploy/kubernetes/web-config.yml":
			continue // loaded as peerbridge loads it by TestDeployWebConfigExample
		case strings.HasSuffix(f, ".policy.hcl"):
			errs = checkNomadPolicy(text)
		case strings.HasSuffix(f, ".hcl"):
			errs = checkNomad(t, text)
		case strings.HasSuffix(f, ".service"):
			errs = checkSystemd(t, text)
		case strings.HasSuffix(f, ".server"):
			errs = checkCorefileBlock(text)
		case strings.HasSuffix(f, ".env"), strings.HasSuffix(f, ".md"):
			continue // read by TestDeployEnvNames
		case strings.HasPrefix(f, "deploy/ecs/") && strings.HasSuffix(f, ".json"):
			errs = checkECSFile(f, text, uid, gid)
		case strings.HasSuffix(f, ".socket"):
			continue // held to systemd-analyze and to peerbridge's order (lifecycle_deploy_test.go)
		case f == "deploy/aws/iam-policy.json", f == "deploy/grafana/peerbridge.json":
			continue // held to the ec2 reference's policy (ec2_test.go) and to the metrics (metrics_test.go)
		default:
			t.Errorf("%s: no rules for this kind of file; add them to TestDeployRules", f)
			continue
		}
		checked++
		for _, err := range errs {
			t.Errorf("%s: %v", f, err)
		}
	}
	if checked < 7 {
		t.Fatalf("checked %d files: the walk is broken", checked)
	}
}

// checkManifest applies the rules to every document of a YAML file:
// Kubernetes manifests and compose files.
func checkManifest(t *testing.T, name, text string, uid, gid int) []error {
	t.Helper()
	docs, err := yamlDocs(text)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, doc := range docs {
		walkImages(doc, func(ref string) {
			if err := pinnedImage(ref); err != nil {
				errs = append(errs, err)
			}
		})
		meta, _ := doc["metadata"].(map[string]any)
		switch doc["kind"] {
		case "Secret":
			if doc["data"] != nil || doc["stringData"] != nil {
				errs = append(errs, fmt.Errorf("Secret %v holds data: applying the file would replace the real token; tell the reader to create it with kubectl", meta["name"]))
			}
		case "ConfigMap":
			if meta["name"] == "coredns" {
				errs = append(errs, errors.New("a ConfigMap named coredns replaces the cluster's Corefile (and its ready, kubernetes and prometheus plugins); give the server block to add instead"))
			}
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			spec, _ := doc["spec"].(map[string]any)
			tmpl, _ := spec["template"].(map[string]any)
			pod, _ := tmpl["spec"].(map[string]any)
			errs = append(errs, checkPodSecurity(pod, uid, gid)...)
		case "Pod":
			pod, _ := doc["spec"].(map[string]any)
			errs = append(errs, checkPodSecurity(pod, uid, gid)...)
		}
		// Compose files: a service's user, when set, is the image's.
		if services, ok := doc["services"].(map[string]any); ok && doc["kind"] == nil {
			for svc, v := range services {
				m, _ := v.(map[string]any)
				if user, ok := m["user"]; ok {
					if _, _, err := numericNonRoot(fmt.Sprint(user)); err != nil {
						errs = append(errs, fmt.Errorf("service %s: %v", svc, err))
					}
				}
			}
		}
	}
	return errs
}

// yamlDocs decodes every document of a YAML stream.
func yamlDocs(text string) ([]map[string]any, error) {
	var docs []map[string]any
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, doc)
	}
}

// walkImages calls f with the value of every "image" key.
func walkImages(v any, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "image" {
				f(s)
				continue
			}
			walkImages(x, f)
		}
	case []any:
		for _, x := range v {
			walkImages(x, f)
		}
	}
}

// checkPodSecurity wants the pod to run as the image's numeric user, which
// the kubelet can then check against runAsNonRoot.
func checkPodSecurity(pod map[string]any, uid, gid int) []error {
	var errs []error
	sc, _ := pod["securityContext"].(map[string]any)
	if sc["runAsNonRoot"] != true {
		errs = append(errs, errors.New("pod securityContext lacks runAsNonRoot: true"))
	}
	for key, want := range map[string]int{"runAsUser": uid, "runAsGroup": gid} {
		if got, ok := sc[key].(int); !ok || got != want || got == 0 {
			errs = append(errs, fmt.Errorf("pod securityContext %s is %v, want the Dockerfile's %d", key, sc[key], want))
		}
	}
	containers, _ := pod["containers"].([]any)
	for _, c := range containers {
		c, _ := c.(map[string]any)
		csc, _ := c["securityContext"].(map[string]any)
		if csc["runAsUser"] == 0 || csc["runAsGroup"] == 0 || csc["runAsNonRoot"] == false {
			errs = append(errs, fmt.Errorf("container %v runs as root", c["name"]))
		}
	}
	return errs
}

// hclBlock is a block of HCL as Nomad jobs use it: attributes and nested
// blocks. parseHCL reads that subset (strings, numbers, booleans, lists,
// blocks with labels, comments), which is all the checks need; it is not a
// general HCL parser (no heredocs, no expressions).
type hclBlock struct {
	typ    string
	labels []string
	attrs  map[string]any
	blocks []*hclBlock
}

var hclTokenRE = regexp.MustCompile(`\s+|#[^\n]*|//[^\n]*|/\*(?s:.*?)\*/|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_.-]*|-?[0-9][0-9.]*|[{}\[\]=,]`)

func parseHCL(text string) (*hclBlock, error) {
	var toks []string
	for pos := 0; pos < len(text); {
		loc := hclTokenRE.FindStringIndex(text[pos:])
		if loc == nil || loc[0] != 0 {
			return nil, fmt.Errorf("unexpected %q at offset %d", text[pos:min(pos+10, len(text))], pos)
		}
		tok := text[pos : pos+loc[1]]
		pos += loc[1]
		if strings.TrimSpace(tok) != "" && tok[0] != '#' && !strings.HasPrefix(tok, "//") && !strings.HasPrefix(tok, "/*") {
			toks = append(toks, tok)
		}
	}
	root := &hclBlock{attrs: map[string]any{}}
	rest, err := root.parseBody(toks, false)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected %q", rest[0])
	}
	return root, err
}

func (b *hclBlock) parseBody(toks []string, nested bool) ([]string, error) {
	for len(toks) > 0 {
		if toks[0] == "}" {
			if !nested {
				return toks, errors.New("unbalanced }")
			}
			return toks[1:], nil
		}
		name := toks[0]
		toks = toks[1:]
		if len(toks) > 0 && toks[0] == "=" {
			v, rest, err := parseHCLValue(toks[1:])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			b.attrs[name], toks = v, rest
			continue
		}
		child := &hclBlock{typ: name, attrs: map[string]any{}}
		for len(toks) > 0 && strings.HasPrefix(toks[0], `"`) {
			label, _ := strconv.Unquote(toks[0])
			child.labels, toks = append(child.labels, label), toks[1:]
		}
		if len(toks) == 0 || toks[0] != "{" {
			return nil, fmt.Errorf("%s: want = or {", name)
		}
		rest, err := child.parseBody(toks[1:], true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		b.blocks, toks = append(b.blocks, child), rest
	}
	if nested {
		return nil, errors.New("unclosed {")
	}
	return nil, nil
}

func parseHCLValue(toks []string) (any, []string, error) {
	if len(toks) == 0 {
		return nil, nil, errors.New("no value")
	}
	switch tok := toks[0]; {
	case strings.HasPrefix(tok, `"`):
		s, err := strconv.Unquote(tok)
		return s, toks[1:], err
	case tok == "[":
		var list []any
		toks = toks[1:]
		for len(toks) > 0 && toks[0] != "]" {
			v, rest, err := parseHCLValue(toks)
			if err != nil {
				return nil, nil, err
			}
			list, toks = append(list, v), rest
			if len(toks) > 0 && toks[0] == "," {
				toks = toks[1:]
			}
		}
		if len(toks) == 0 {
			return nil, nil, errors.New("unclosed [")
		}
		return list, toks[1:], nil
	case tok == "{" || tok == "}" || tok == "]" || tok == "=" || tok == ",":
		return nil, nil, fmt.Errorf("unexpected %q", tok)
	default: // numbers, true, false, references
		return tok, toks[1:], nil
	}
}

// find returns the nested blocks at a path of block types.
func (b *hclBlock) find(path ...string) []*hclBlock {
	if len(path) == 0 {
		return []*hclBlock{b}
	}
	var found []*hclBlock
	for _, c := range b.blocks {
		if c.typ == path[0] {
			found = append(found, c.find(path[1:]...)...)
		}
	}
	return found
}

// checkNomad checks a Nomad job: its docker tasks run a pinned image, and
// none as root.
// checkNomadPolicy holds a Nomad ACL policy to read-only rights: every
// namespace block grants read-job (or list-jobs) and nothing more, so
// that the example never grows write rights.
func checkNomadPolicy(text string) []error {
	root, err := parseHCL(text)
	if err != nil {
		return []error{err}
	}
	namespaces := root.find("namespace")
	if len(namespaces) == 0 {
		return []error{errors.New("no namespace block")}
	}
	var errs []error
	for _, ns := range namespaces {
		caps, _ := ns.attrs["capabilities"].([]any)
		if !slices.ContainsFunc(caps, func(c any) bool { return c == "read-job" }) {
			errs = append(errs, fmt.Errorf("namespace %v lacks read-job", ns.labels))
		}
		for _, c := range caps {
			if c != "read-job" && c != "list-jobs" {
				errs = append(errs, fmt.Errorf("namespace %v grants %v, more than reading", ns.labels, c))
			}
		}
		if len(ns.attrs) != 1 {
			errs = append(errs, fmt.Errorf("namespace %v sets more than capabilities", ns.labels))
		}
	}
	return errs
}

func checkNomad(t *testing.T, text string) []error {
	t.Helper()
	root, err := parseHCL(text)
	if err != nil {
		return []error{err}
	}
	tasks := root.find("job", "group", "task")
	if len(tasks) == 0 {
		return []error{errors.New("no job/group/task")}
	}
	var errs []error
	for _, task := range tasks {
		if user, ok := task.attrs["user"]; ok {
			if u := fmt.Sprint(user); u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
				errs = append(errs, fmt.Errorf("task %v runs as root", task.labels))
			}
		}
		for _, config := range task.find("config") {
			image, _ := config.attrs["image"].(string)
			if err := pinnedImage(image); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// checkSystemd parses a unit file (sections, key=value, comments, line
// continuations) and wants a service that runs as no root.
func checkSystemd(t *testing.T, text string) []error {
	t.Helper()
	sections := map[string]map[string][]string{}
	var cur map[string][]string
	text = strings.ReplaceAll(text, "\\\n", " ")
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			cur = map[string][]string{}
			sections[line[1:len(line)-1]] = cur
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || cur == nil {
				return []error{fmt.Errorf("line %d: %q is not key=value in a section", i+1, line)}
			}
			cur[strings.TrimSpace(k)] = append(cur[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	var errs []error
	svc := sections["Service"]
	if len(svc["ExecStart"]) == 0 {
		errs = append(errs, errors.New("no [Service] ExecStart"))
	}
	user := ""
	if u := svc["User"]; len(u) > 0 {
		user = u[len(u)-1]
	}
	dynamic := len(svc["DynamicUser"]) > 0 && svc["DynamicUser"][len(svc["DynamicUser"])-1] == "yes"
	if !dynamic && (user == "" || user == "root" || user == "0") {
		errs = append(errs, fmt.Errorf("runs as root: set DynamicUser=yes or a User other than root (User=%q)", user))
	}
	if sections["Install"] == nil {
		errs = append(errs, errors.New("no [Install] section: systemctl enable cannot install it"))
	}
	return errs
}

// checkCorefileBlock wants one server block for the zone, to add to a
// Corefile, and nothing that belongs to the cluster's own ".:53" block.
func checkCorefileBlock(text string) []error {
	var code []string
	for _, line := range strings.Split(text, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			code = append(code, l)
		}
	}
	var errs []error
	if len(code) < 3 || !strings.HasPrefix(code[0], "peers.internal:53 {") || code[len(code)-1] != "}" {
		errs = append(errs, fmt.Errorf("not one server block for peers.internal:53: %q", code))
	}
	for _, l := range code {
		if strings.HasPrefix(l, ".:") || strings.HasPrefix(l, "kubernetes") {
			errs = append(errs, fmt.Errorf("%q belongs to the cluster's own Corefile", l))
		}
	}
	if !slices.ContainsFunc(code, func(l string) bool { return strings.HasPrefix(l, "forward . ") }) {
		errs = append(errs, errors.New("no forward to peerbridge"))
	}
	return errs
}

// corednsBinary finds the CoreDNS that .ci/run builds: $PEERBRIDGE_COREDNS_BIN,
// else its cache. Without one the test is skipped loudly, or fails under CI.
func corednsBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PEERBRIDGE_COREDNS_BIN"); bin != "" {
		return bin
	}
	if cache, err := os.UserCacheDir(); err == nil {
		bin := filepath.Join(cache, "peerbridge", "coredns-v1.15.0", "coredns")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	const hint = "bash .ci/run builds it, or set PEERBRIDGE_COREDNS_BIN"
	if bridgetest.CI() {
		t.Fatalf("no coredns binary, and CI=true: %s", hint)
	}
	t.Skipf("SKIPPED: no coredns binary (%s); this test runs the CoreDNS server block", hint)
	return ""
}

// TestCoreDNSServerBlock runs the server block of deploy/kubernetes in a
// real CoreDNS, as the reader is told to (the forward address replaced),
// and asks it for the zone: the answer must come from the upstream it
// forwards to.
func TestCoreDNSServerBlock(t *testing.T) {
	bin := corednsBinary(t)

	// The upstream stands in for peerbridge's Service.
	upstream, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: upstream, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   net.IPv4(10, 0, 0, 1),
		})
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })

	// A free loopback port for CoreDNS, which binds to it alone.
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()

	block := repoFile(t, "deploy/kubernetes/coredns-peers.server")
	block = strings.Replace(block, "peers.internal:53 {", fmt.Sprintf("peers.internal:%d {\n    bind 127.0.0.1", port), 1)
	block = strings.Replace(block, "forward . 10.96.0.53:53", "forward . "+upstream.LocalAddr().String(), 1)
	dir := t.TempDir()
	corefile := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bridgetest.Buffer
	cmd := exec.Command(bin, "-conf", corefile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	c := &dns.Client{Timeout: 2 * time.Second}
	q := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("coredns exited: %v\n%s", err, logs.String())
		default:
		}
		r, _, err := c.Exchange(q, fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			if a, ok := r.Answer[0].(*dns.A); !ok || !a.A.Equal(net.IPv4(10, 0, 0, 1)) {
				t.Fatalf("answer %v, want the upstream's 10.0.0.1", r.Answer)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no forwarded answer after 30s: %v %v\n%s", r, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
