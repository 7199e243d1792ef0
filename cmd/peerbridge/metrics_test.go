package main

import (
	"encoding/json"
	"maps"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

var typeLineRE = regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)

// metricFamilies returns the families of a text exposition, name to type.
func metricFamilies(body string) map[string]string {
	fams := map[string]string{}
	for _, m := range typeLineRE.FindAllStringSubmatch(body, -1) {
		fams[m[1]] = m[2]
	}
	return fams
}

// sampleValue returns the value of one series, written as the exposition
// writes it: name{labels in order}.
func sampleValue(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitMetrics scrapes /metrics until every series reaches its minimum.
func waitMetrics(t *testing.T, base string, atLeast map[string]float64) string {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		body := get(t, base+"/metrics")
		missing := ""
		for series, min := range atLeast {
			if v, ok := sampleValue(body, series); !ok || v < min {
				missing = series
				break
			}
		}
		if missing == "" {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45s %s is below its minimum %v:\n%s", missing, atLeast[missing], body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promtoolCheck runs promtool check metrics on an exposition: it prints
// nothing when there is nothing to say.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	promtool := bridgetest.RequireTool(t, "promtool", "apt-get install prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// startCompleteBridge runs a bridge with every kind of topology and
// Consul, so that every metric family has something to report.
func startCompleteBridge(t *testing.T) (*running, *fakeDigitalOcean) {
	agent := bridgetest.StartConsul(t, "")
	do := startFakeDigitalOcean(t)
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES":             "web,db,cache",
		"PEERBRIDGE_POLL_INTERVAL":          "1s",
		"PEERBRIDGE_WEB_PROVIDER":           "static",
		"PEERBRIDGE_WEB_STATIC_PEERS":       "node1=10.0.0.1,node2=10.0.0.2,node2=fd00::2",
		"PEERBRIDGE_WEB_PORT":               "4369",
		"PEERBRIDGE_DB_PROVIDER":            "droplet",
		"PEERBRIDGE_DB_DROPLET_API_URL":     do.URL,
		"PEERBRIDGE_DB_DROPLET_IP_VERSION":  "both",
		"PEERBRIDGE_DB_PORT":                "9100",
		"DIGITALOCEAN_TOKEN":                fakeDOToken,
		"PEERBRIDGE_CACHE_PROVIDER":         "rancher",
		"PEERBRIDGE_CACHE_RANCHER_URL":      startFakeRancher(t),
		"PEERBRIDGE_CACHE_RANCHER_WAIT":     "1s",
		"PEERBRIDGE_CACHE_RANCHER_SERVICES": "demo/redis",
		"CONSUL_HTTP_ADDR":                  agent.Addr,
		"PEERBRIDGE_DNS_ADDR":               "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":              "127.0.0.1:0",
	})
	return startMain(t), do
}

// TestMetricsOfAHealthyBridge: after a few polls and a query every family
// METRICS.md lists is there and no other, promtool finds nothing to say,
// and the Grafana dashboard asks only for metrics that exist.
func TestMetricsOfAHealthyBridge(t *testing.T) {
	run, _ := startCompleteBridge(t)
	waitReady(t, "http://"+run.http)
	q := new(dns.Msg).SetQuestion("web.peers.internal.", dns.TypeA)
	if _, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, run.dns); err != nil {
		t.Fatal(err)
	}
	atLeast := map[string]float64{`peerbridge_dns_answers_total{qtype="A",rcode="NOERROR",transport="udp"}`: 1}
	for _, tp := range [][2]string{{"web", "static"}, {"db", "droplet"}, {"cache", "rancher"}} {
		atLeast[`peerbridge_polls_total{provider="`+tp[1]+`",topology="`+tp[0]+`"}`] = 2
	}
	atLeast[`peerbridge_consul_writes_total{kind="create"}`] = 1
	atLeast[`peerbridge_consul_last_sync_timestamp_seconds`] = 1
	body := waitMetrics(t, "http://"+run.http, atLeast)
	fams := metricFamilies(body)

	t.Run("every family METRICS.md lists, and only those", func(t *testing.T) {
		documented := documentedMetrics(t)
		var got []string
		for name := range fams {
			if strings.HasPrefix(name, "peerbridge_") {
				got = append(got, name)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, documented) {
			t.Errorf("exposed     %v\nMETRICS.md  %v", got, documented)
		}
		for _, want := range []string{
			`peerbridge_poll_failures_total{kind="timeout",provider="droplet",topology="db"} 0`,
			`peerbridge_provider_ratelimit_limit{provider="droplet",topology="db"} 5000`,
			`peerbridge_provider_ratelimit_remaining{provider="droplet",topology="db"} 4321`,
			`peerbridge_peers{health="unknown",provider="static",topology="web"} 2`,
			`peerbridge_peers_published{provider="droplet",topology="db"} 3`,
			`peerbridge_ha_leader 1`,
		} {
			if !strings.Contains(body, want+"\n") {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("promtool check metrics", func(t *testing.T) { promtoolCheck(t, body) })
	t.Run("the dashboard names only metrics that exist", func(t *testing.T) { checkDashboard(t, fams) })
}

// TestMetricsWhenPollsFail: before any success every poll metric is
// there, each failure counted under its kind, and the rest still lint
// clean.
func TestMetricsWhenPollsFail(t *testing.T) {
	down, auth := startFakeDigitalOcean(t), startFakeDigitalOcean(t)
	down.fail(http.StatusServiceUnavailable)
	auth.fail(http.StatusUnauthorized)
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES":           "db,auth",
		"PEERBRIDGE_PROVIDER":             "droplet",
		"PEERBRIDGE_POLL_INTERVAL":        "1s",
		"PEERBRIDGE_DB_DROPLET_API_URL":   down.URL,
		"PEERBRIDGE_AUTH_DROPLET_API_URL": auth.URL,
		"DIGITALOCEAN_TOKEN":              fakeDOToken,
		"PEERBRIDGE_DNS_ADDR":             "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":            "127.0.0.1:0",
	})
	run := startMain(t)
	body := waitMetrics(t, "http://"+run.http, map[string]float64{
		`peerbridge_poll_failures_total{kind="transient",provider="droplet",topology="db"}`:     2,
		`peerbridge_poll_failures_total{kind="credentials",provider="droplet",topology="auth"}`: 2,
	})
	for _, top := range []string{"db", "auth"} {
		for _, kind := range bridge.FailureKinds() {
			if _, ok := sampleValue(body, `peerbridge_poll_failures_total{kind="`+string(kind)+`",provider="droplet",topology="`+top+`"}`); !ok {
				t.Errorf("no %s failure series for %s", kind, top)
			}
		}
		if _, ok := sampleValue(body, `peerbridge_poll_duration_seconds_count{provider="droplet",topology="`+top+`"}`); !ok {
			t.Errorf("no poll duration for %s", top)
		}
	}
	if v, _ := sampleValue(body, `peerbridge_poll_failures_total{kind="error",provider="droplet",topology="db"}`); v != 0 {
		t.Errorf("db's 503s counted as error (%v), want transient only", v)
	}
	promtoolCheck(t, body)
}

var metricRowRE = regexp.MustCompile("(?m)^\\| (`peerbridge_[^|]*)\\|")

// documentedMetrics returns the metric names of METRICS.md's table,
// sorted.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, row := range metricRowRE.FindAllStringSubmatch(repoFile(t, metricsDoc), -1) {
		for _, n := range regexp.MustCompile("`(peerbridge_[a-z_]+)`").FindAllStringSubmatch(row[1], -1) {
			names = append(names, n[1])
		}
	}
	if len(names) < 15 {
		t.Fatalf("%s lists only %d metrics: the pattern is broken", metricsDoc, len(names))
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// checkDashboard checks that every expression of the Grafana dashboard,
// its variables' queries included, names only metrics that exist.
func checkDashboard(t *testing.T, fams map[string]string) {
	known := map[string]bool{}
	for name, typ := range fams {
		known[name] = true
		switch typ {
		case "histogram":
			known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
		case "summary":
			known[name+"_sum"], known[name+"_count"] = true, true
		}
	}
	var dash struct {
		Title      string
		UID        string
		Panels     []dashPanel
		Templating struct {
			List []struct {
				Name  string
				Query struct{ Query string }
			}
		}
	}
	if err := json.Unmarshal([]byte(repoFile(t, "deploy/grafana/peerbridge.json")), &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		// label_values(<selector>, <label>): only the selector names metrics.
		q := v.Query.Query
		if inner, ok := strings.CutPrefix(q, "label_values("); ok {
			q = inner[:strings.LastIndex(inner, ",")]
		}
		exprs = append(exprs, q)
	}
	if dash.UID == "" || len(exprs) < 20 {
		t.Fatalf("dashboard %q: %d expressions", dash.UID, len(exprs))
	}
	shown := map[string]bool{}
	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("no metric in %q", e)
		}
		for _, n := range names {
			shown[n] = true
			if !known[n] {
				t.Errorf("%q asks for %s, which peerbridge does not expose", e, n)
			}
		}
	}
	for name := range maps.Keys(fams) {
		base := strings.TrimSuffix(name, "_total")
		if strings.HasPrefix(name, "peerbridge_") && !shown[name] && !shown[name+"_bucket"] && !shown[base] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}

type dashPanel struct {
	Type    string
	Title   string
	Targets []struct{ Expr string }
	Panels  []dashPanel
}

// PromQL words that are not metric names: aggregations, which may come
// before their parenthesis, and keywords.
var promqlWords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// metricNames returns the metric names a PromQL expression (with Grafana's
// $variables) selects: the identifiers that are not functions, keywords or
// inside label matchers, strings, ranges, or the label lists of by(),
// without(), on() and ignoring().
func metricNames(expr string) []string {
	var names []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	skipTo := func(i int, open, close byte) int { // from expr[i] == open to after its match
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				end := strings.IndexByte(expr[i+1:], c)
				if end < 0 {
					return len(expr)
				}
				i += end + 1
			case c == open:
				depth++
			case c == close:
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	nextNonSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\n' || expr[i] == '\t') {
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c)
			if end < 0 {
				return names
			}
			i += end + 2
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '$': // a Grafana variable: $name or ${name}
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipTo(i, '{', '}')
			}
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case '0' <= c && c <= '9' || c == '.': // a number or a duration
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := nextNonSpace(i)
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" ||
				word == "group_left" || word == "group_right":
				if next < len(expr) && expr[next] == '(' {
					i = skipTo(next, '(', ')')
				}
			case promqlWords[word]:
			case next < len(expr) && expr[next] == '(': // a function
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`up`, "up"},
		{`histogram_quantile(0.95, sum by (le, topology) (rate(peerbridge_poll_duration_seconds_bucket{job=~"$job",topology=~"$topology"}[$__rate_interval])))`,
			"peerbridge_poll_duration_seconds_bucket"},
		{`time() - max by (topology) (peerbridge_last_success_timestamp_seconds{job=~"$job"})`, "peerbridge_last_success_timestamp_seconds"},
		{`a / on(instance) group_left(version) b offset 5m > bool 1e3`, "a b"},
		{`sum(rate(x[5m:1m])) without (kind) or vector(0) unless y{l="a{b}"}`, "x y"},
		{`label_join(z, "dst", ",", "src1")`, "z"},
		{`${job}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := strings.Join(metricNames(tt.expr), " "); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFailureKindsDocumented: METRICS.md's row of the failures metric
// names every kind the metric has.
func TestFailureKindsDocumented(t *testing.T) {
	want := "| `peerbridge_poll_failures_total` | `topology`, `provider`, `kind` | failed polls: " + failureKindsText("`", ", ") + " (each at 0 from the start) |"
	if !strings.Contains(repoFile(t, metricsDoc), want) {
		t.Errorf("%s lacks the row\n%s", metricsDoc, want)
	}
}
