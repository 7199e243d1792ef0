package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

var quickStart = map[string]string{
	"PEERBRIDGE_SERVICE":       "myapp",
	"PEERBRIDGE_PORT":          "4369",
	"PEERBRIDGE_NODE_BASENAME": "myapp",
	"PEERBRIDGE_STATIC_PEERS":  "node1=10.0.0.1,node2=10.0.0.2,node2=fd00::2",
	"PEERBRIDGE_DNS_ADDR":      "127.0.0.1:0",
	"PEERBRIDGE_HTTP_ADDR":     "127.0.0.1:0",
}

func TestRunInProcess(t *testing.T) {
	setEnv(t, quickStart)
	run := startMain(t)
	a := [2]string{run.dns, run.http}
	waitReady(t, "http://"+a[1])

	q := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeSRV)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, a[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 2 || len(r.Extra) != 3 {
		t.Errorf("SRV answer %v; want 2 SRV and 3 addresses", r)
	}
	resp, err := http.Get("http://" + a[1] + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	metrics := get(t, "http://"+a[1]+"/metrics")
	for _, want := range []string{
		`peerbridge_polls_total{provider="static",topology="myapp"} 1`,
		`peerbridge_peers_published{provider="static",topology="myapp"} 2`,
		`peerbridge_dns_answers_total{qtype="SRV",rcode="NOERROR",transport="udp"} 1`,
		`peerbridge_poll_duration_seconds_count{provider="static",topology="myapp"} 1`,
		`peerbridge_poll_failures_total{kind="transient",provider="static",topology="myapp"} 0`,
		`peerbridge_build_info{`,
		`go_goroutines `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(get(t, "http://"+a[1]+"/status")), &doc); err != nil {
		t.Fatal(err)
	}
	if !doc.Ready || len(doc.Topologies) != 1 || len(doc.Topologies[0].Peers) != 2 || doc.Topologies[0].LastSuccess == nil ||
		!slices.Equal(doc.Topologies[0].Peers[1].Addrs, []string{"10.0.0.2", "fd00::2"}) {
		t.Errorf("/status = %+v", doc)
	}

	t.Setenv("PEERBRIDGE_HTTP_ADDR", a[1])
	var out bytes.Buffer
	if err := NewMain(&out, &out).Run(context.Background(), []string{"health"}); err != nil || out.String() != "ok\n" {
		t.Errorf("health: %v %q", err, out.String())
	}

	if err := run.stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if _, err := net.Dial("tcp", a[1]); err == nil {
		t.Error("HTTP still listening after shutdown")
	}
	if err := NewMain(io.Discard, io.Discard).Run(context.Background(), []string{"health"}); err == nil {
		t.Error("health succeeds with nothing listening")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// running is a Main running in this process with the environment set.
type running struct {
	dns, http string
	logs      *bridgetest.Buffer
	stop      func() error // cancels Run and returns its error
}

// startMain runs Main and waits until it listens; the test's end stops it.
func startMain(t *testing.T) *running {
	t.Helper()
	r := &running{logs: &bridgetest.Buffer{}}
	m := NewMain(io.Discard, r.logs)
	addrs := make(chan [2]net.Addr, 1)
	m.OnListen = func(d, h net.Addr) { addrs <- [2]net.Addr{d, h} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, nil) }()
	var once sync.Once
	var err error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { r.stop() })
	select {
	case a := <-addrs:
		r.dns, r.http = a[0].String(), a[1].String()
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, r.logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not listening after 10s")
	}
	return r
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := map[string]string{"PEERBRIDGE_HTTP_ADDR": ln.Addr().String()}
	for k, v := range quickStart {
		if k != "PEERBRIDGE_HTTP_ADDR" {
			env[k] = v
		}
	}
	setEnv(t, env)
	err = NewMain(io.Discard, io.Discard).Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "http listen") {
		t.Fatalf("Run = %v, want an http listen error", err)
	}
}

func TestCheck(t *testing.T) {
	env := maps.Clone(quickStart)
	env["PEERBRIDGE_CONSUL"] = "true" // check only prints what it would write
	setEnv(t, env)
	var out bytes.Buffer
	if err := NewMain(&out, &out).Run(context.Background(), []string{"check"}); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"topology myapp: service myapp, provider static, peers: 2 (2 published)",
		"myapp.peers.internal.\t5\tIN\tSRV\t0 1 4369 node1.myapp.peers.internal.",
		"node2.myapp.peers.internal.\t5\tIN\tAAAA\tfd00::2",
		"node2.myapp.peers.internal.\t5\tIN\tTXT\t\"node=myapp@10.0.0.2\"",
		"1.0.0.10.in-addr.arpa.\t5\tIN\tPTR\tnode1.myapp.peers.internal.",
		"node peerbridge-myapp-node2 address 10.0.0.2 node-meta external-node=true,peerbridge-owner=peerbridge service myapp port 4369",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}

// buildPeerbridge builds the command into a temporary directory for tests
// that run it as a process, with -race when the test binary has it. The
// test binary's own flags mean the build reuses the packages it was
// compiled from: .ci/run compiles them once, with -race, and a plain build
// here compiled all of peerbridge's dependencies a second time, inside the
// tests' time (about a minute of a cold run on 2 cores). The processes
// then run under the race detector too.
func buildPeerbridge(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "peerbridge")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary runs the README's quick start as a user would: the built
// binary, dig against it, then SIGTERM.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dig := bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	bin := buildPeerbridge(t)
	env := cleanEnv()
	for k, v := range quickStart {
		env = append(env, k+"="+v)
	}

	t.Run("bad configuration exits 2 naming each problem", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = append(cleanEnv(), "PEERBRIDGE_SERVICE=my_app", "PEERBRIDGE_STATIC_PEERS=x")
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 2 {
			t.Fatalf("exit code %d, want 2\n%s", code, out)
		}
		if !strings.Contains(string(out), "PEERBRIDGE_SERVICE:") || !strings.Contains(string(out), "PEERBRIDGE_STATIC_PEERS:") {
			t.Fatalf("output does not name both variables:\n%s", out)
		}
	})

	t.Run("check exits 0", func(t *testing.T) {
		cmd := exec.Command(bin, "check")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("check: %v\n%s", err, out)
		}
	})

	t.Run("serves dig and stops on SIGTERM", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = env
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		dnsAddr, httpAddr, logs := listenAddrs(t, stderr)
		waitReady(t, "http://"+httpAddr)

		host, port, _ := net.SplitHostPort(dnsAddr)
		out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "+time=2", "myapp.peers.internal", "SRV").CombinedOutput()
		if err != nil {
			t.Fatalf("dig: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		if !slices.Equal(lines, []string{"0 1 4369 node1.myapp.peers.internal.", "0 1 4369 node2.myapp.peers.internal."}) {
			t.Fatalf("dig SRV +short:\n%s", out)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, logs())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("still running 10s after SIGTERM")
		}
		if !strings.Contains(logs(), "msg=stopped") {
			t.Errorf("no clean stop in the log:\n%s", logs())
		}
	})
}

var listeningRE = regexp.MustCompile(`msg=listening dns=(\S+) http=(\S+)`)

// listenAddrs reads the binary's log until it says where it listens, and
// keeps collecting the rest.
func listenAddrs(t testing.TB, r io.Reader) (dnsAddr, httpAddr string, logs func() string) {
	t.Helper()
	var buf bridgetest.Buffer
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			buf.Write([]byte(sc.Text() + "\n"))
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
	}()
	select {
	case m := <-found:
		return m[1], m[2], buf.String
	case <-time.After(10 * time.Second):
		t.Fatalf("the binary did not log its addresses:\n%s", buf.String())
		return "", "", nil
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanEnv is the environment without PEERBRIDGE_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix+"_") {
			env = append(env, kv)
		}
	}
	return env
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestRunDroplet wires the droplet provider from the environment: the
// token from a file, the API URL pointed at a fake serving DigitalOcean's
// own example listing.
func TestRunDroplet(t *testing.T) {
	listing, err := os.ReadFile("../../providers/droplet/testdata/droplets_list_all.json")
	if err != nil {
		t.Fatal(err)
	}
	const token = "dop_v1_cmdtestsecret"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token || r.URL.Query().Get("tag_name") != "env:prod" {
			http.Error(w, `{"id":"unauthorized","message":"Unable to authenticate you."}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(listing) // the example ignores the filter: all three come back
	}))
	defer api.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":         "web",
		"PEERBRIDGE_PROVIDER":        "droplet",
		"PEERBRIDGE_DROPLET_TAG":     "env:prod",
		"PEERBRIDGE_DROPLET_REGION":  "nyc3",
		"PEERBRIDGE_DROPLET_API_URL": api.URL,
		"DIGITALOCEAN_TOKEN_FILE":    tokenFile,
		"PEERBRIDGE_DNS_ADDR":        "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":       "127.0.0.1:0",
	})
	run := startMain(t)
	logs := run.logs
	waitReady(t, "http://"+run.http)

	got := answerA(t, run.dns, "web.peers.internal.")
	if !slices.Equal(got, []string{"10.128.192.124", "10.128.192.125", "10.128.192.138"}) {
		t.Errorf("A answer %v, want the three private addresses", got)
	}
	metrics := get(t, "http://"+run.http+"/metrics")
	if !strings.Contains(metrics, `peerbridge_provider_api_requests_total{provider="droplet",topology="web"}`) ||
		!strings.Contains(metrics, `peerbridge_peers_skipped_total{provider="droplet",reason="no_address",topology="web"} 0`) {
		t.Errorf("droplet metrics missing:\n%s", metrics)
	}
	for what, text := range map[string]string{"log": logs.String(), "metrics": metrics, "status": get(t, "http://"+run.http+"/status")} {
		if strings.Contains(text, token) {
			t.Fatalf("the token is in the %s:\n%s", what, text)
		}
	}
}

// TestRunConsul publishes to a real agent, and leaves the entries in place
// when it stops.
func TestRunConsul(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	env := maps.Clone(quickStart)
	env["CONSUL_HTTP_ADDR"] = agent.Addr
	env["PEERBRIDGE_CONSUL_TAGS"] = "beam"
	setEnv(t, env)

	var logs bridgetest.Buffer
	m := NewMain(io.Discard, &logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, nil) }()

	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	entries := func() []*api.CatalogService {
		e, _, err := client.Catalog().Service("myapp", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(entries()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no Consul entries after 15s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := entries()[0]
	if e.NodeMeta["peerbridge-owner"] != "peerbridge" || e.ServicePort != 4369 || !slices.Equal(e.ServiceTags, []string{"beam"}) {
		t.Errorf("entry %+v", e)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(entries()); n != 2 {
		t.Fatalf("%d entries after a clean stop, want the 2 left in place", n)
	}
}

// TestRunRancher wires the rancher provider from the environment against a
// server that answers with the real metadata server's capture.
func TestRunRancher(t *testing.T) {
	meta := startFakeRancher(t)
	setEnv(t, map[string]string{
		"PEERBRIDGE_TOPOLOGIES":             "web,cache",
		"PEERBRIDGE_PROVIDER":               "rancher",
		"PEERBRIDGE_RANCHER_URL":            meta,
		"PEERBRIDGE_RANCHER_WAIT":           "1s",
		"PEERBRIDGE_WEB_RANCHER_SERVICES":   "demo/myapp",
		"PEERBRIDGE_CACHE_RANCHER_SERVICES": "demo/redis",
		"PEERBRIDGE_DNS_ADDR":               "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":              "127.0.0.1:0",
	})
	run := startMain(t)
	waitReady(t, "http://"+run.http)
	for name, want := range map[string]string{"web.peers.internal.": "10.42.10.11", "cache.peers.internal.": "10.42.20.21"} {
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), run.dns)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != want {
			t.Errorf("%s: %v, want %s", name, r.Answer, want)
		}
	}
}

func TestCheckFailsWhenAPollFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PROVIDER": "rancher", "PEERBRIDGE_RANCHER_URL": dead,
	})
	var out bytes.Buffer
	err = NewMain(&out, io.Discard).Run(context.Background(), []string{"check"})
	if err == nil || !strings.Contains(out.String(), "topology web: poll failed") {
		t.Fatalf("check = %v\n%s", err, out.String())
	}
}

// answerA asks the DNS server at addr for name's A records, over UDP, and
// returns the addresses sorted.
func answerA(t *testing.T, addr, name string) []string {
	t.Helper()
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), addr)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rr := range r.Answer {
		got = append(got, rr.(*dns.A).A.String())
	}
	slices.Sort(got)
	return got
}
