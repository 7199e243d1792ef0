package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// promServer is Debian's prometheus, run by a test in the foreground with
// its own configuration and storage in a temporary directory.
type promServer struct {
	base string
	logs *bridgetest.Buffer
}

func startPrometheus(t *testing.T, config string) *promServer {
	t.Helper()
	bin := bridgetest.RequireTool(t, "prometheus", "apt-get install prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := &promServer{base: "http://" + addr, logs: &bridgetest.Buffer{}}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", p.logs.String())
		default:
		}
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60s:\n%s", p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api GETs one of Prometheus' API endpoints and decodes its data.
func (p *promServer) api(t *testing.T, path string, data any) {
	t.Helper()
	var doc struct {
		Status string
		Error  string
		Data   json.RawMessage
	}
	if err := json.Unmarshal([]byte(get(t, p.base+path)), &doc); err != nil || doc.Status != "success" {
		t.Fatalf("GET %s: %v %s", path, err, doc.Error)
	}
	if err := json.Unmarshal(doc.Data, data); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

type promSample struct {
	Metric map[string]string
	Value  [2]any
}

func (p *promServer) query(t *testing.T, expr string) []promSample {
	t.Helper()
	var data struct{ Result []promSample }
	p.api(t, "/api/v1/query?query="+url.QueryEscape(expr), &data)
	return data.Result
}

type promTarget struct {
	ScrapePool       string
	DiscoveredLabels map[string]string
	Labels           map[string]string
	Health           string
}

func (p *promServer) targets(t *testing.T, pool string) []promTarget {
	t.Helper()
	var data struct{ ActiveTargets []promTarget }
	p.api(t, "/api/v1/targets?state=active", &data)
	return slices.DeleteFunc(data.ActiveTargets, func(tg promTarget) bool { return tg.ScrapePool != pool })
}

// eventually retries cond until it returns "" or the deadline passes; it
// returns what cond last said was wrong.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 90s: %s", what, msg)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sdSummary is one discovered target as the test expects it: address and
// the peerbridge labels that identify it.
func sdSummary(l map[string]string) string {
	return fmt.Sprintf("%s topology=%s peer=%s id=%s region=%s addresses=%s", l["__address__"],
		l["__meta_peerbridge_topology"], l["__meta_peerbridge_peer"], l["__meta_peerbridge_provider_id"],
		l["__meta_peerbridge_attr_region"], l["__meta_peerbridge_addresses"])
}

func summaries(tgs []promTarget) []string {
	var out []string
	for _, tg := range tgs {
		out = append(out, sdSummary(tg.DiscoveredLabels))
	}
	slices.Sort(out)
	return out
}

// TestPrometheus runs the real Prometheus against a bridge with a static
// and a droplet topology: it scrapes peerbridge, discovers exactly the
// published peers through http_sd, with their labels, scrapes the one that
// is peerbridge itself, and follows a new droplet on its next refresh.
func TestPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Prometheus")
	}
	bridgetest.RequireTool(t, "prometheus", "apt-get install prometheus")
	httpPort := freePort(t)
	do := startFakeDigitalOcean(t)
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES":    "web,db",
		"PEERBRIDGE_POLL_INTERVAL": "1s",
		// web's first peer is peerbridge itself, so that one discovered
		// target can really be scraped.
		"PEERBRIDGE_WEB_PROVIDER":          "static",
		"PEERBRIDGE_WEB_STATIC_PEERS":      "self=127.0.0.1,other=127.0.0.2",
		"PEERBRIDGE_WEB_PORT":              strconv.Itoa(httpPort),
		"PEERBRIDGE_DB_PROVIDER":           "droplet",
		"PEERBRIDGE_DB_DROPLET_API_URL":    do.URL,
		"PEERBRIDGE_DB_DROPLET_IP_VERSION": "both",
		"PEERBRIDGE_DB_PORT":               "9100",
		"DIGITALOCEAN_TOKEN":               fakeDOToken,
		"PEERBRIDGE_DNS_ADDR":              "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":             "127.0.0.1:" + strconv.Itoa(httpPort),
	})
	run := startMain(t)
	waitReady(t, "http://"+run.http)

	// Prometheus 2.42 takes any positive refresh_interval; 1s makes the
	// next refresh come soon.
	prom := startPrometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: peerbridge
    static_configs:
      - targets: ['%[1]s']
  - job_name: peers
    http_sd_configs:
      - url: http://%[1]s/sd/prometheus
        refresh_interval: 1s
  - job_name: db
    http_sd_configs:
      - url: http://%[1]s/sd/prometheus?topology=db
        refresh_interval: 1s
`, run.http))

	self := "127.0.0.1:" + strconv.Itoa(httpPort)
	web := []string{
		"127.0.0.1:" + strconv.Itoa(httpPort) + " topology=web peer=self id=self region= addresses=127.0.0.1",
		"127.0.0.2:" + strconv.Itoa(httpPort) + " topology=web peer=other id=other region= addresses=127.0.0.2",
	}
	db := []string{
		"10.128.192.124:9100 topology=db peer=example-com id=3164444 region=nyc3 addresses=10.128.192.124,2604:a880:0:1010::18a:a001",
		"10.128.192.138:9100 topology=db peer=assets-example-com id=3164459 region=nyc3 addresses=10.128.192.138",
		"10.128.192.125:9100 topology=db peer=stage-example-com id=3164412 region=nyc3 addresses=10.128.192.125",
	}

	t.Run("peerbridge is up and its series are stored", func(t *testing.T) {
		eventually(t, "up == 1", func() string {
			if r := prom.query(t, `up{job="peerbridge"} == 1`); len(r) != 1 {
				return fmt.Sprintf("up: %v", r)
			}
			return ""
		})
		exposed := metricFamilies(get(t, "http://"+run.http+"/metrics"))
		eventually(t, "every family stored", func() string {
			stored := map[string]bool{}
			for _, s := range prom.query(t, `count by (__name__) ({job="peerbridge",__name__=~"peerbridge_.+"})`) {
				stored[s.Metric["__name__"]] = true
			}
			for name, typ := range exposed {
				if typ == "histogram" {
					name += "_bucket"
				}
				if strings.HasPrefix(name, "peerbridge_") && !stored[name] {
					return "not stored: " + name
				}
			}
			return ""
		})
		r := prom.query(t, `peerbridge_peers_published{job="peerbridge"}`)
		got := map[string]string{}
		for _, s := range r {
			got[s.Metric["topology"]] = fmt.Sprint(s.Value[1])
		}
		if got["web"] != "2" || got["db"] != "3" {
			t.Errorf("peers_published stored as %v, want web 2, db 3", got)
		}
	})

	t.Run("http_sd discovers exactly the published peers", func(t *testing.T) {
		want := slices.Sorted(slices.Values(slices.Concat(web, db)))
		eventually(t, "all peers discovered", func() string {
			if got := summaries(prom.targets(t, "peers")); !slices.Equal(got, want) {
				return fmt.Sprintf("\n got  %q\n want %q", got, want)
			}
			return ""
		})
		wantDB := slices.Sorted(slices.Values(db))
		eventually(t, "?topology=db", func() string {
			if got := summaries(prom.targets(t, "db")); !slices.Equal(got, wantDB) {
				return fmt.Sprintf("\n got  %q\n want %q", got, wantDB)
			}
			return ""
		})
		// The discovered target that is peerbridge itself is scraped.
		eventually(t, "the discovered self is up", func() string {
			if r := prom.query(t, `up{job="peers",instance="`+self+`"} == 1`); len(r) != 1 {
				return fmt.Sprintf("up: %v", r)
			}
			return ""
		})
	})

	t.Run("http_sd follows a change of the peer set", func(t *testing.T) {
		do.add(3164500, "new.example.com", "10.128.192.200")
		added := "10.128.192.200:9100 topology=db peer=new-example-com id=3164500 region=nyc3 addresses=10.128.192.200"
		want := slices.Sorted(slices.Values(slices.Concat(web, db, []string{added})))
		eventually(t, "the new droplet discovered", func() string {
			if got := summaries(prom.targets(t, "peers")); !slices.Equal(got, want) {
				return fmt.Sprintf("\n got  %q\n want %q", got, want)
			}
			return ""
		})
	})
}
