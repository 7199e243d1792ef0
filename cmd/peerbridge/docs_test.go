package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/kelseyhightower/envconfig"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// The documents: README.md for whoever meets the project, and each
// reference beside the code it describes. These tests hold them to the
// code: links resolve, every variable, metric and provider is there, and
// the commands they show run.

var update = flag.Bool("update", false, "rewrite CONFIGURATION.md's variable reference")

const (
	configurationDoc   = "cmd/peerbridge/CONFIGURATION.md"
	metricsDoc         = "cmd/peerbridge/METRICS.md"
	troubleshootingDoc = "cmd/peerbridge/TROUBLESHOOTING.md"
	consulDoc          = "bridge/consulpub/README.md"
)

// markdownFiles lists every Markdown document of the repository, from
// its top, .git left out.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			files = append(files, filepath.ToSlash(strings.TrimPrefix(p, "../../")))
		}
		return nil
	})
	if err != nil || !slices.Contains(files, "README.md") || len(files) < 8 {
		t.Fatalf("Markdown files %v, %v", files, err)
	}
	return files
}

// outsideCode is text without its fenced code blocks, whose lines may
// start with # (shell comments) or hold ]( without being Markdown.
func outsideCode(text string) string {
	var b strings.Builder
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var (
	docHeadingRE = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`)
	docLinkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	slugDropRE   = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
)

// docAnchors are the fragments GitHub gives text's headings: lower case,
// punctuation dropped, spaces made hyphens, a repeated one numbered.
func docAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, m := range docHeadingRE.FindAllStringSubmatch(outsideCode(text), -1) {
		slug := strings.ReplaceAll(slugDropRE.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
		if n := seen[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

// brokenLinks checks the relative links of docs (path -> text, paths from
// the top of the repository); exists says whether a path is a file or a
// directory there.
func brokenLinks(docs map[string]string, exists func(string) bool) []string {
	var broken []string
	for _, from := range slices.Sorted(maps.Keys(docs)) {
		for _, m := range docLinkRE.FindAllStringSubmatch(outsideCode(docs[from]), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, fragment, _ := strings.Cut(target, "#")
			to := from
			if file != "" {
				to = path.Clean(path.Join(path.Dir(from), file))
				if strings.HasPrefix(to, "../") || !exists(to) {
					broken = append(broken, fmt.Sprintf("%s: %s: no such file", from, target))
					continue
				}
			}
			if fragment == "" || !strings.HasSuffix(to, ".md") {
				continue
			}
			text, ok := docs[to]
			if !ok || !docAnchors(text)[fragment] {
				broken = append(broken, fmt.Sprintf("%s: %s: %s has no heading #%s", from, target, to, fragment))
			}
		}
	}
	return broken
}

// TestDocsLinks: every relative link between the documents names a file
// that exists and, with a #fragment, a heading of it.
func TestDocsLinks(t *testing.T) {
	t.Run("the checker finds what is broken", func(t *testing.T) {
		docs := map[string]string{
			"README.md":   "# Top\n## Secondaries: BIND, Knot, CoreDNS\n[ok](a/B.md#polling-within-the-apis-budget) [ok](#top) [no](a/C.md) [no](a/B.md#nope) [no](#secondaries)\n```sh\n# not a heading\n[x](nowhere.md)\n```\n[ok](https://example.com/x.md) [ok](#secondaries-bind-knot-coredns)",
			"a/B.md":      "# B\n## Polling within the API's budget\n[ok](../README.md#top) [ok](../deploy/) [no](../../outside.md) [ok](#b)\n## `libcluster` DNSPoll\n[ok](#libcluster-dnspoll) [no](#not-a-heading)",
			"deploy/x.md": "",
		}
		exists := func(p string) bool { _, ok := docs[p]; return ok || p == "deploy" }
		want := []string{
			"README.md: a/C.md: no such file",
			"README.md: a/B.md#nope: a/B.md has no heading #nope",
			"README.md: #secondaries: README.md has no heading #secondaries",
			"a/B.md: ../../outside.md: no such file",
			"a/B.md: #not-a-heading: a/B.md has no heading #not-a-heading",
		}
		if got := brokenLinks(docs, exists); !slices.Equal(got, want) {
			t.Errorf("broken links\n got  %q\n want %q", got, want)
		}
	})

	docs := map[string]string{}
	for _, f := range markdownFiles(t) {
		docs[f] = repoFile(t, f)
	}
	exists := func(p string) bool {
		_, err := os.Stat(filepath.Join("..", "..", filepath.FromSlash(p)))
		return err == nil
	}
	for _, b := range brokenLinks(docs, exists) {
		t.Error(b)
	}
	links := 0
	for _, text := range docs {
		links += len(docLinkRE.FindAllString(outsideCode(text), -1))
	}
	if links < 50 {
		t.Fatalf("only %d links found: the pattern is broken", links)
	}
}

// TestDocsProviderTable: the README's provider table has one row per
// registered provider, in the registry's order, linking its reference.
func TestDocsProviderTable(t *testing.T) {
	_, table, ok := strings.Cut(repoFile(t, "README.md"), "\n## Providers\n")
	if !ok {
		t.Fatal("README.md has no Providers section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	rowRE := regexp.MustCompile("(?m)^\\| `([a-z0-9]+)` \\|(.*)\\|$")
	var names []string
	for _, row := range rowRE.FindAllStringSubmatch(table, -1) {
		names = append(names, row[1])
		ref := "providers/" + row[1] + "/README.md"
		if !strings.Contains(row[2], "]("+ref+")") {
			t.Errorf("README.md's row of %s does not link %s: %s", row[1], ref, row[0])
		}
	}
	var want []string
	for _, p := range providers {
		want = append(want, p.Name)
	}
	if !slices.Equal(names, want) {
		t.Errorf("README.md's provider table lists %v, the registry %v", names, want)
	}
}

// envReference renders CONFIGURATION.md's table of variables from the
// same structs as help.
func envReference(t *testing.T) string {
	t.Helper()
	const row = "{{range .}}| `{{usage_key .}}` | {{if usage_default .}}`{{usage_default .}}`{{end}} | {{usage_description .}} |\n{{end}}"
	var b bytes.Buffer
	b.WriteString("| variable | default | meaning |\n| --- | --- | --- |\n")
	for _, spec := range envSpecs() {
		if err := envconfig.Usagef(spec.prefix, spec.spec, &b, row); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

const (
	refStart = "<!-- env-reference:start (generated by go test ./cmd/peerbridge -run TestDocsConfigurationReference -update) -->\n"
	refEnd   = "<!-- env-reference:end -->"
)

// TestDocsConfigurationReference keeps CONFIGURATION.md's table equal to
// what help prints: every variable, its default and meaning.
func TestDocsConfigurationReference(t *testing.T) {
	doc := repoFile(t, configurationDoc)
	start, end := strings.Index(doc, refStart), strings.Index(doc, refEnd)
	if start < 0 || end < start {
		t.Fatalf("%s has no env-reference markers", configurationDoc)
	}
	want := envReference(t)
	got := doc[start+len(refStart) : end]
	if got == want {
		return
	}
	if *update {
		doc = doc[:start+len(refStart)] + want + doc[end:]
		if err := os.WriteFile(filepath.Base(configurationDoc), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's variable reference is out of date with help; run go test ./cmd/peerbridge -run TestDocsConfigurationReference -update\n got:\n%s\nwant:\n%s", configurationDoc, got, want)
}

// TestTroubleshootingStatusFilter runs the jq filter of
// TROUBLESHOOTING.md on a /status document with every field set: a field
// /status lacks comes out null, and misleads whoever reads it.
func TestTroubleshootingStatusFilter(t *testing.T) {
	m := regexp.MustCompile(`/status \| jq '([^']*)'`).FindStringSubmatch(repoFile(t, troubleshootingDoc))
	if m == nil {
		t.Fatalf("%s has no curl .../status | jq '...' line", troubleshootingDoc)
	}
	jq := bridgetest.RequireTool(t, "jq", "apt-get install jq")
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	age := 12.5
	doc := statusDoc{
		Version: "v1", Role: "single", Ready: false, NotReady: []string{"myapp: no discovery yet"},
		Zone: "peers.internal.", Serial: 7,
		Topologies: []topologyStatus{{
			Topology: "myapp", Service: "myapp", Provider: "static", Interval: "10s",
			LastPoll: &now, LastSuccess: &now, LastError: "poll: timeout", Failures: 1, Held: true,
			PublishError: "consul: down", SetSource: "saved", SetAge: &age,
			Peers: []peerStatus{{Name: "node1", ID: "1", Addrs: []string{"10.0.0.1"}, Health: "passing", Attrs: map[string]string{"region": "nyc3"}}},
		}},
		Consul: &consulStatus{Creates: 1, Updates: 1, Deletes: 1, Failures: 1, LastSync: &now},
	}
	in, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jq, "-c", m[1])
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jq %q: %v\n%s", m[1], err, out)
	}
	if len(bytes.TrimSpace(out)) == 0 || bytes.Contains(out, []byte("null")) {
		t.Errorf("%s's jq filter %q on a full /status gives\n%s\nnull is a field /status does not have", troubleshootingDoc, m[1], out)
	}
}

// TestMetricsDocScrapeConfigs checks every Prometheus configuration of
// METRICS.md (the http_sd recipe among them) with promtool; the files a
// configuration names (passwords, certificates) are made empty beside it.
func TestMetricsDocScrapeConfigs(t *testing.T) {
	promtool := bridgetest.RequireTool(t, "promtool", "apt-get install prometheus")
	blocks := regexp.MustCompile("(?s)```yaml\n(# Prometheus:.*?)```").FindAllStringSubmatch(repoFile(t, metricsDoc), -1)
	const httpSD = "# Prometheus: scrape node_exporter on every peer of the web topology, through peerbridge's http_sd\n"
	found := false
	for i, b := range blocks {
		found = found || strings.HasPrefix(b[1], httpSD)
		dir := t.TempDir()
		for _, f := range regexp.MustCompile(`(?m)^\s*\w+_file: (\S+)$`).FindAllStringSubmatch(b[1], -1) {
			if err := os.WriteFile(filepath.Join(dir, f[1]), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("prometheus-%d.yml", i))
		if err := os.WriteFile(p, []byte(b[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "check", "config", p).CombinedOutput(); err != nil {
			t.Errorf("promtool check config: %v\n%s\n%s", err, out, b[1])
		}
	}
	if len(blocks) < 3 || !found {
		t.Fatalf("%s has %d Prometheus configurations, the http_sd recipe among them: %v", metricsDoc, len(blocks), found)
	}
}

// TestDocsConsulPolicySed runs the Consul reference's sed line on
// deploy/consul/policy.hcl and compares the policy it makes with the one
// the ACL tests load into a real Consul; the file's own comment shows the
// same commands as the reference.
func TestDocsConsulPolicySed(t *testing.T) {
	doc := repoFile(t, consulDoc)
	sed := regexp.MustCompile(`(?m)^sed -e 's/<owner>/peerbridge/g' -e 's/<service>/myapp/g' deploy/consul/policy\.hcl > peerbridge-policy\.hcl$`).FindString(doc)
	if sed == "" {
		t.Fatalf("%s has no sed line filling deploy/consul/policy.hcl", consulDoc)
	}
	policy := repoFile(t, "deploy/consul/policy.hcl")
	for _, command := range []string{
		sed,
		"consul acl policy create -name peerbridge -rules @peerbridge-policy.hcl",
		"consul acl token create -description peerbridge -policy-name peerbridge",
	} {
		if !strings.Contains(doc, "\n"+command+"\n") {
			t.Errorf("%s lacks the line %q", consulDoc, command)
		}
		if !strings.Contains(policy, "#   "+command+"\n") {
			t.Errorf("deploy/consul/policy.hcl's comment lacks %q", command)
		}
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "deploy", "consul"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy", "consul", "policy.hcl"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", sed)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", sed, err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "peerbridge-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if want := policyRules(t, "peerbridge", "myapp"); string(got) != want || strings.Contains(want, "<owner>") || strings.Contains(want, "<service>") {
		t.Errorf("the sed line makes\n%s\nthe ACL tests load\n%s", got, want)
	}
}

// TestDocsQuickStart: the README's two quick-start commands are the ones
// the tests run: the static topology of quickStart (TestBinary), and
// .ci/run.
func TestDocsQuickStart(t *testing.T) {
	readme := repoFile(t, "README.md")
	if !strings.Contains(readme, "\nbash .ci/run\n") {
		t.Error("README.md's quick start does not run the tests with bash .ci/run")
	}
	line := regexp.MustCompile(`(?m)^go build -o peerbridge \./cmd/peerbridge && (.*) \./peerbridge$`).FindStringSubmatch(readme)
	if line == nil {
		t.Fatal("README.md has no quick-start command 1")
	}
	env := map[string]string{}
	for _, kv := range regexp.MustCompile(`(\w+)=('[^']*'|\S+)`).FindAllStringSubmatch(line[1], -1) {
		env[kv[1]] = strings.Trim(kv[2], "'")
	}
	for k, v := range quickStart {
		if got, ok := env[k]; !ok || (got != v && !strings.HasSuffix(k, "_ADDR")) {
			t.Errorf("README.md's command 1 sets %s=%q, the tests %q", k, got, v)
		}
	}
}

// TestDocsREADMEDig runs the dig commands of the README's "What it
// serves" against the quick start's configuration and compares what dig
// prints with the README, in any order (answers are shuffled) and with
// the SOA serial left out (it is a time).
func TestDocsREADMEDig(t *testing.T) {
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	_, section, _ := strings.Cut(repoFile(t, "README.md"), "\n## What it serves\n")
	_, block, _ := strings.Cut(section, "```console\n")
	block, _, _ = strings.Cut(block, "```")
	env := maps.Clone(quickStart)
	env["PEERBRIDGE_PORT_NAME"] = "epmd"
	setEnv(t, env)
	run := startMain(t)
	waitReady(t, "http://"+run.http)
	_, port, _ := net.SplitHostPort(run.dns)

	serial := regexp.MustCompile(`(SOA\t\S+ \S+ )\d+`)
	normal := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, strings.Join(strings.Fields(serial.ReplaceAllString(l, "${1}SERIAL")), " "))
			}
		}
		slices.Sort(out)
		return out
	}
	commands := 0
	for _, cmdBlock := range strings.Split(block, "$ ")[1:] {
		command, output, _ := strings.Cut(cmdBlock, "\n")
		args := strings.Fields(command)
		if args[0] != "dig" {
			continue
		}
		commands++
		if !slices.Equal(args[1:4], []string{"@127.0.0.1", "-p", "8653"}) {
			t.Fatalf("README.md's %q does not ask the quick start's server", command)
		}
		args[3] = port
		out, err := exec.Command(dig, append(args[1:], "+time=2", "+tries=2")...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", command, err, out)
		}
		if got, want := normal(strings.Split(string(out), "\n")), normal(strings.Split(output, "\n")); !slices.Equal(got, want) {
			t.Errorf("%s\n got  %q\n want %q (README.md)", command, got, want)
		}
	}
	if commands < 6 {
		t.Fatalf("only %d dig commands in README.md's What it serves: A, AAAA, SRV, PTR, TXT and SOA", commands)
	}
}

// TestDocsConsulACLCommands runs the Consul reference's three commands
// (sed, consul acl policy create, consul acl token create) as an operator
// would, with the real consul command against an agent that denies by
// default: the token they make may write the leader lock's keys, and
// nothing else.
func TestDocsConsulACLCommands(t *testing.T) {
	doc := repoFile(t, consulDoc)
	_, block, _ := strings.Cut(doc, "\n## Consul with ACLs\n")
	_, block, _ = strings.Cut(block, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	if strings.Count(block, "\n") != 3 || !strings.HasPrefix(block, "sed ") {
		t.Fatalf("%s's Consul with ACLs has no block of the three commands:\n%s", consulDoc, block)
	}
	agent := startACLConsul(t, "")
	admin, _, err := agent.root.ACL().TokenCreate(&api.ACLToken{
		Description: "operator", Policies: []*api.ACLTokenPolicyLink{{Name: "global-management"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "deploy", "consul"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy", "consul", "policy.hcl"), []byte(repoFile(t, "deploy/consul/policy.hcl")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-e", "-c", block)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(bridgetest.ConsulBinary(t))+string(os.PathListSeparator)+os.Getenv("PATH"),
		"CONSUL_HTTP_ADDR="+agent.Addr, "CONSUL_HTTP_TOKEN="+admin.SecretID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the commands: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^SecretID:\s+(\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("consul acl token create printed no SecretID:\n%s", out)
	}
	client, err := api.NewClient(&api.Config{Address: agent.Addr, Token: string(m[1])})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "peerbridge/leader/peerbridge/stamp", Value: []byte("x")}, nil); err != nil {
		t.Errorf("the token may not write the leader's stamp: %v", err)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "elsewhere", Value: []byte("x")}, nil); err == nil {
		t.Error("the token may write any key")
	}
}

// TestDocsQueryCommands runs every dig and curl line the troubleshooting
// and DNS references show against the quick start's server (with zone
// transfers allowed to loopback, as the DNS reference says to try them):
// each must succeed and print an answer, never an error status.
func TestDocsQueryCommands(t *testing.T) {
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	bridgetest.RequireTool(t, "jq", "apt-get install jq")
	env := maps.Clone(quickStart)
	env["PEERBRIDGE_PORT_NAME"] = "epmd"
	env["PEERBRIDGE_DNS_TRANSFER_ALLOW"] = "127.0.0.1"
	setEnv(t, env)
	run := startMain(t)
	waitReady(t, "http://"+run.http)
	_, port, _ := net.SplitHostPort(run.dns)

	lineRE := regexp.MustCompile(`(?m)^(dig @127\.0\.0\.1 -p 8653 |curl -s 127\.0\.0\.1:8654/).*$`)
	// (A ready /status has no not_ready: jq prints null for it.)
	bad := regexp.MustCompile(`status: (REFUSED|NXDOMAIN|SERVFAIL|FORMERR)|Transfer failed|connection refused|timed out`)
	commands := 0
	for _, doc := range []string{troubleshootingDoc, "dnsserver/README.md"} {
		for _, line := range lineRE.FindAllString(repoFile(t, doc), -1) {
			commands++
			shell := strings.NewReplacer("dig @127.0.0.1 -p 8653 ", dig+" @127.0.0.1 -p "+port+" +time=2 +tries=2 ",
				"127.0.0.1:8654/", run.http+"/").Replace(line)
			out, err := exec.Command("bash", "-e", "-o", "pipefail", "-c", shell).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) == 0 || bad.Match(out) {
				t.Errorf("%s: %s: %v\n%s", doc, line, err, out)
			}
		}
	}
	if commands < 6 {
		t.Fatalf("only %d commands found: the pattern is broken", commands)
	}
}
