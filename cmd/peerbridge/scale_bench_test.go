package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
)

// BenchmarkScale runs the peerbridge binary as a fleet would see it: a
// DigitalOcean-shaped API with 10,000 droplets (50 pages of 200, in the
// API's own droplet shape) and a real Consul dev agent behind a proxy that
// counts write requests. It reports the time from start to the first full
// publish in DNS and in Consul, the write requests the fill took, and then,
// over steady polls of the unchanged set, the writes (want 0), the
// process's CPU per poll and its resident memory. .ci/bench/run prints the
// figures next to issue 17's measurement from before the batched writes.
//
//	go test -run '^$' -bench '^BenchmarkScale$' -benchtime 1x ./cmd/peerbridge
//
// It only watches the process from outside (DNS answers, the catalog as
// the agent reports it, the requests on the wire, /proc), so it measures
// whatever the Consul publisher does, not how.
func BenchmarkScale(b *testing.B) {
	if testing.Short() {
		b.Skip("runs peerbridge against 10,000 droplets and a real Consul for about a minute")
	}
	bridgetest.ConsulBinary(b) // skip (or fail under CI) before building anything
	bin := buildPeerbridge(b)
	api := startScaleAPI(b, scalePeers)
	hz := clockTicks(b)

	var sum scaleResult
	n := 0
	for b.Loop() {
		r := runScale(b, bin, api, hz)
		b.Logf("run %d: %s", n+1, r)
		sum.add(r)
		n++
	}
	m := sum.div(float64(n))
	b.ReportMetric(0, "ns/op") // the process's figures below are the result, not the loop's time
	b.ReportMetric(m.toDNS.Seconds(), "s-to-dns")
	b.ReportMetric(m.toConsul.Seconds(), "s-to-consul")
	b.ReportMetric(m.writesFill, "writes-fill")
	b.ReportMetric(m.opsFill, "ops-fill")
	b.ReportMetric(scalePeers/max(m.writesFill, 1), "peers/write")
	b.ReportMetric(m.writesSteady, "writes-steady")
	b.ReportMetric(m.readsPerPoll, "reads/poll")
	b.ReportMetric(m.fullReadsPerPoll, "full-reads/poll")
	b.ReportMetric(float64(m.cpuPerPoll.Microseconds())/1000, "ms-cpu/poll")
	b.ReportMetric(m.rssMB, "MB-rss")
	b.ReportMetric(m.peakMB, "MB-rss-peak")
}

const (
	scalePeers = 10_000
	// scaleSteadyPolls is how many polls of the unchanged set the steady
	// figures are taken over.
	scaleSteadyPolls = 5
	scaleToken       = droplettest.Token
)

type scaleResult struct {
	toDNS, toConsul     time.Duration
	writesFill, opsFill float64
	writesSteady        float64 // over all steady polls
	readsPerPoll        float64
	fullReadsPerPoll    float64 // reads of a service's entries (a health query without a filter)
	cpuPerPoll          time.Duration
	rssMB, peakMB       float64
	pollsDuringFill     int
}

func (r scaleResult) String() string {
	return fmt.Sprintf("DNS full after %.2fs, Consul full after %.2fs (%d polls), %.0f write requests (%.0f ops) for the fill; "+
		"%d steady polls: %.0f writes, %.1f reads/poll (%.1f full), %.1f ms CPU/poll, RSS %.1f MB (peak %.1f MB)",
		r.toDNS.Seconds(), r.toConsul.Seconds(), r.pollsDuringFill, r.writesFill, r.opsFill,
		scaleSteadyPolls, r.writesSteady, r.readsPerPoll, r.fullReadsPerPoll, float64(r.cpuPerPoll.Microseconds())/1000, r.rssMB, r.peakMB)
}

func (r *scaleResult) add(o scaleResult) {
	r.toDNS += o.toDNS
	r.toConsul += o.toConsul
	r.writesFill += o.writesFill
	r.opsFill += o.opsFill
	r.writesSteady += o.writesSteady
	r.readsPerPoll += o.readsPerPoll
	r.fullReadsPerPoll += o.fullReadsPerPoll
	r.cpuPerPoll += o.cpuPerPoll
	r.rssMB += o.rssMB
	r.peakMB += o.peakMB
}

func (r scaleResult) div(n float64) scaleResult {
	return scaleResult{
		toDNS: time.Duration(float64(r.toDNS) / n), toConsul: time.Duration(float64(r.toConsul) / n),
		writesFill: r.writesFill / n, opsFill: r.opsFill / n, writesSteady: r.writesSteady / n,
		readsPerPoll: r.readsPerPoll / n, fullReadsPerPoll: r.fullReadsPerPoll / n, cpuPerPoll: time.Duration(float64(r.cpuPerPoll) / n),
		rssMB: r.rssMB / n, peakMB: r.peakMB / n,
	}
}

// runScale starts an empty Consul and one peerbridge process, and measures
// the fill and the steady polls after it.
func runScale(b *testing.B, bin string, api *scaleAPI, hz int64) scaleResult {
	b.Helper()
	agent := bridgetest.StartConsul(b, "")
	defer agent.Stop() // each run fills an empty catalog
	proxy := startCountingProxy(b, agent.Addr)

	cmd := exec.Command(bin)
	cmd.Env = append(cleanEnv(),
		"PEERBRIDGE_SERVICE=web", "PEERBRIDGE_PROVIDER=droplet", "PEERBRIDGE_DROPLET_TAG=web",
		"PEERBRIDGE_DROPLET_API_URL="+api.URL, "DIGITALOCEAN_TOKEN="+scaleToken,
		"PEERBRIDGE_POLL_INTERVAL=2s", "CONSUL_HTTP_ADDR="+proxy.addr,
		"PEERBRIDGE_DNS_ADDR=127.0.0.1:0", "PEERBRIDGE_HTTP_ADDR=127.0.0.1:0", "PEERBRIDGE_LOG_LEVEL=info",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	polls0 := api.polls()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	dnsAddr, httpAddr, logs := listenAddrs(b, stderr)
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if b.Failed() {
			b.Logf("peerbridge's log (tail):\n%s", tail(logs(), 4000))
		}
	}()
	fail := func(format string, args ...any) {
		b.Helper()
		select {
		case <-exited:
			format += " (peerbridge exited)"
		default:
		}
		b.Fatalf(format, args...)
	}

	// The fill: until DNS answers for every sampled peer and Consul's
	// catalog holds every peer. Records change atomically, so a sample
	// that spans the set (first, last, between) answering means the whole
	// set is served; /status confirms the count below.
	var r scaleResult
	deadline := start.Add(10 * time.Minute) // a 2-core machine shared with other work, and one write per peer
	for r.toDNS == 0 || r.toConsul == 0 {
		if time.Now().After(deadline) {
			fail("after %v: DNS full: %v, Consul full: %v", time.Since(start).Round(time.Second), r.toDNS != 0, r.toConsul != 0)
		}
		if r.toDNS == 0 && dnsServesSample(dnsAddr) {
			r.toDNS = time.Since(start)
		}
		if r.toConsul == 0 {
			if n, err := catalogCount(agent.Addr, "web"); err != nil {
				fail("reading the catalog: %v", err)
			} else if n == scalePeers {
				r.toConsul = time.Since(start)
				r.pollsDuringFill = api.polls() - polls0
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Settle: the poll that was running when the catalog filled, and the
	// one after it, count to the fill; steady state starts at the next.
	p := api.waitPolls(b, api.polls()+2, time.Minute)
	w0, ops0, reads0, full0 := proxy.writes.Load(), proxy.ops.Load(), proxy.reads.Load(), proxy.fullReads.Load()
	r.writesFill, r.opsFill = float64(w0), float64(ops0)
	cpu0 := procCPU(b, cmd.Process.Pid, hz)
	api.waitPolls(b, p+scaleSteadyPolls, time.Minute)
	cpu1 := procCPU(b, cmd.Process.Pid, hz)
	r.writesSteady = float64(proxy.writes.Load() - w0)
	r.readsPerPoll = float64(proxy.reads.Load()-reads0) / scaleSteadyPolls
	r.fullReadsPerPoll = float64(proxy.fullReads.Load()-full0) / scaleSteadyPolls
	r.cpuPerPoll = (cpu1 - cpu0) / scaleSteadyPolls
	r.rssMB, r.peakMB = procMemMB(b, cmd.Process.Pid)

	// What was measured must be what was asked for.
	if n := proxy.errors.Load(); n > 0 {
		fail("%d requests did not reach Consul through the proxy", n)
	}
	if n := proxy.txnBodiesUnreadable.Load(); n > 0 {
		fail("%d /v1/txn bodies were not JSON arrays: the ops counted are wrong", n)
	}
	if n := statusPeers(b, httpAddr); n != scalePeers {
		fail("/status reports %d peers, want %d", n, scalePeers)
	}
	if !dnsServesSample(dnsAddr) {
		fail("DNS stopped answering for the sampled peers")
	}
	if n, err := catalogCount(agent.Addr, "web"); err != nil || n != scalePeers {
		fail("after the steady polls the catalog holds %d instances of web (%v), want %d", n, err, scalePeers)
	}
	return r
}

// scaleAPI is droplettest's fake of GET /v2/droplets with n droplets that
// never change, so that each page is encoded once, and plenty of the
// token's budget left, so that nothing slows the fixed interval down.
type scaleAPI struct {
	URL string
	api *droplettest.API
}

func startScaleAPI(b *testing.B, n int) *scaleAPI {
	b.Helper()
	template := droplettest.FixtureDroplets(b, "droplets_list_all.json")[0] // active, tagged web, private and public v4, v6
	droplets := make([]map[string]any, n)
	for i := range n {
		d := droplettest.Copy(b, template)
		d["id"], d["name"] = 3_000_000+i, fmt.Sprintf("web-%d", i)
		d["networks"] = map[string]any{
			"v4": []any{
				map[string]any{"ip_address": scaleIP(i), "netmask": "255.255.0.0", "gateway": "nil", "type": "private"},
				map[string]any{"ip_address": fmt.Sprintf("203.0.%d.%d", i/250, i%250+1), "netmask": "255.255.255.0", "gateway": "203.0.0.1", "type": "public"},
			},
			"v6": []any{map[string]any{"ip_address": fmt.Sprintf("2001:db8::%x", i+1), "netmask": 64, "gateway": "2001:db8::1", "type": "public"}},
		}
		droplets[i] = d
	}
	api := droplettest.New(b, droplets)
	api.Set(func(s *droplettest.State) { s.Remaining, s.Spend = 4000, false })
	return &scaleAPI{URL: strings.TrimSuffix(api.URL(), "/"), api: api}
}

// scaleIP is droplet i's private address: 10.0.0.1 to 10.0.39.250 for
// 10,000 droplets.
func scaleIP(i int) string { return fmt.Sprintf("10.0.%d.%d", i/250, i%250+1) }

// polls is the number of polls begun so far: requests for the first page.
func (a *scaleAPI) polls() int {
	return a.api.Count(func(q url.Values) bool {
		n, err := strconv.Atoi(q.Get("page"))
		return err != nil || n <= 1
	})
}

// waitPolls waits until the n-th poll has begun, and returns n.
func (a *scaleAPI) waitPolls(b *testing.B, n int, timeout time.Duration) int {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for a.polls() < n {
		if time.Now().After(deadline) {
			b.Fatalf("poll %d did not begin within %v (%d so far)", n, timeout, a.polls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// countingProxy stands between peerbridge and Consul and counts what
// crosses it: write requests (PUT, POST, DELETE), the operations they
// carry (a /v1/txn body's entries, else one), and reads.
type countingProxy struct {
	addr                string
	writes, ops, reads  atomic.Int64
	fullReads           atomic.Int64 // of the reads, health queries without a filter: every entry of a service
	txnBodiesUnreadable atomic.Int64
	errors              atomic.Int64 // requests that did not reach Consul
}

func startCountingProxy(b *testing.B, consulAddr string) *countingProxy {
	b.Helper()
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: consulAddr})
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// A request peerbridge gave up on (a blocking read cut short
		// by its stop) is no error of the path to Consul.
		if r.Context().Err() == nil {
			p.errors.Add(1)
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut, http.MethodPost, http.MethodDelete:
			p.writes.Add(1)
			ops := int64(1)
			if r.URL.Path == "/v1/txn" {
				body, err := io.ReadAll(r.Body)
				r.Body.Close()
				var entries []json.RawMessage
				if err == nil && json.Unmarshal(body, &entries) == nil {
					ops = int64(len(entries))
				} else {
					p.txnBodiesUnreadable.Add(1)
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
			}
			p.ops.Add(ops)
		default:
			p.reads.Add(1)
			if strings.HasPrefix(r.URL.Path, "/v1/health/service/") && !r.URL.Query().Has("filter") {
				p.fullReads.Add(1)
			}
		}
		rp.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// dnsServesSample reports whether the server answers every sampled
// peer's own name with exactly its address.
func dnsServesSample(addr string) bool {
	c := &dns.Client{Timeout: time.Second}
	for _, i := range []int{0, 1, 1234, scalePeers / 2, 7777, scalePeers - 2, scalePeers - 1} {
		m, _, err := c.Exchange(new(dns.Msg).SetQuestion(fmt.Sprintf("web-%d.web.peers.internal.", i), dns.TypeA), addr)
		if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			return false
		}
		if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != scaleIP(i) {
			return false
		}
	}
	return true
}

// catalogCount is how many instances of service the agent itself holds
// (asked directly, not through the counting proxy). The UI's summary
// endpoint carries the count without the 10,000 entries' full records.
func catalogCount(consulAddr, service string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+consulAddr+"/v1/internal/ui/services", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/v1/internal/ui/services: %s", resp.Status)
	}
	var services []struct {
		Name          string
		InstanceCount int
	}
	if err := json.NewDecoder(resp.Body).Decode(&services); err != nil {
		return 0, fmt.Errorf("/v1/internal/ui/services: %w", err)
	}
	for _, s := range services {
		if s.Name == service {
			return s.InstanceCount, nil
		}
	}
	return 0, nil
}

func statusPeers(b *testing.B, httpAddr string) int {
	b.Helper()
	resp, err := http.Get("http://" + httpAddr + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var doc statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		b.Fatalf("/status: %v", err)
	}
	if len(doc.Topologies) != 1 {
		b.Fatalf("/status: %d topologies, want 1", len(doc.Topologies))
	}
	return len(doc.Topologies[0].Peers)
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU
// times: getconf's answer, else Linux's 100 on every common architecture.
func clockTicks(b *testing.B) int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && hz > 0 {
			return hz
		}
	}
	b.Logf("getconf CLK_TCK: %v; assuming 100", err)
	return 100
}

// procCPU is the process's user plus system CPU time so far.
func procCPU(b *testing.B, pid int, hz int64) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted from after its closing parenthesis, where field 3 (state)
	// begins; utime and stime are fields 14 and 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	return time.Duration(utime+stime) * time.Second / time.Duration(hz)
}

// procMemMB is the process's resident memory now (VmRSS) and at its
// peak (VmHWM), in MB.
func procMemMB(b *testing.B, pid int) (rss, peak float64) {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			b.Fatalf("/proc/%d/status: %q", pid, line)
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			peak = kb / 1024
		}
	}
	if rss == 0 {
		b.Fatalf("/proc/%d/status has no VmRSS", pid)
	}
	return rss, peak
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
