package rancher

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
)

func newProvider(t testing.TB, meta *fakeMetadata, opts Options) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	logs := &bridgetest.Buffer{}
	opts.URL = meta.srv.URL
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, logs
}

func TestOwnService(t *testing.T) {
	meta := newFakeMetadata(t)
	meta.load("/latest/self/service", "latest_self_service.json")
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"running and healthy", Options{}, []string{"demo-myapp-1=10.42.10.11"}},
		{"any health", Options{AnyHealth: true}, []string{"demo-myapp-1=10.42.10.11", "demo-myapp-2=10.42.10.12"}},
		{"any state", Options{AnyState: true}, []string{"demo-myapp-1=10.42.10.11", "demo-myapp-3=10.42.10.13"}},
		{"anything", Options{AnyState: true, AnyHealth: true},
			[]string{"demo-myapp-1=10.42.10.11", "demo-myapp-2=10.42.10.12", "demo-myapp-3=10.42.10.13"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, logs := newProvider(t, meta, tc.opts)
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := bridgetest.Summary(peers); !slices.Equal(got, tc.want) {
				t.Fatalf("peers %v, want %v", got, tc.want)
			}
			if strings.Contains(logs.String(), "fake-service-token") {
				t.Fatal("the service token was logged")
			}
		})
	}

	p, _ := newProvider(t, meta, Options{})
	peers, _ := p.Peers(context.Background())
	want := map[string]string{
		"container": "demo-myapp-1", "uuid": "0a1b2c3d-0001-4e5f-8a9b-0c1d2e3f4a01", "service": "myapp",
		"stack": "demo", "host_uuid": "8a8b9f1c-4a0e-4b1e-9d43-0c6a1d2b3c01", "label_app": "myapp",
	}
	if peers[0].ID != want["uuid"] || !maps.Equal(peers[0].Attrs, want) {
		t.Errorf("peer %+v, want id and attrs %v", peers[0], want)
	}
	for _, r := range meta.log() {
		if r.Header.Get("Accept") != "application/json" {
			t.Errorf("%s asked without Accept: application/json", r.URL)
		}
	}
}

func TestNamedServices(t *testing.T) {
	meta := newFakeMetadata(t)
	meta.load("/latest/services", "latest_services.json")
	p, _ := newProvider(t, meta, Options{Services: []string{"demo/myapp", "demo/redis"}})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// redis has no health check: health_state null counts as healthy.
	if got := bridgetest.Summary(peers); !slices.Equal(got, []string{"demo-myapp-1=10.42.10.11", "demo-redis-1=10.42.20.21"}) {
		t.Fatalf("peers %v", got)
	}

	p, _ = newProvider(t, meta, Options{Services: []string{"demo/myapp", "other/myapp"}})
	if _, err := p.Peers(context.Background()); err == nil || !strings.Contains(err.Error(), "other/myapp is not in the metadata") {
		t.Fatalf("err = %v, want the missing service named", err)
	}
}

func TestOldVersionListsContainerNames(t *testing.T) {
	meta := newFakeMetadata(t)
	meta.load("/2015-07-25/services", "2015-07-25_services.json")
	meta.load("/2015-07-25/containers", "latest_containers.json")
	p, _ := newProvider(t, meta, Options{Version: "2015-07-25", Services: []string{"demo/myapp"}})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := bridgetest.Summary(peers); !slices.Equal(got, []string{"demo-myapp-1=10.42.10.11"}) {
		t.Fatalf("peers %v", got)
	}
}

func TestAddresses(t *testing.T) {
	meta := newFakeMetadata(t)
	meta.load("/latest/self/service", "latest_self_service.json")
	cs := containersOf(meta.doc("/latest/self/service"), "")
	one, two, three := containerNamed(cs, "demo-myapp-1"), containerNamed(cs, "demo-myapp-2"), containerNamed(cs, "demo-myapp-3")
	one["primary_ip"] = "" // falls back to ips
	one["ips"] = []any{"10.42.99.1", "10.42.99.2"}
	two["health_state"], two["primary_ip"], two["ips"] = "healthy", nil, nil // no address at all
	three["state"], three["primary_ip"] = "running", "10.42.10.13"
	delete(three, "ips")

	p, logs := newProvider(t, meta, Options{})
	for range 2 {
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := bridgetest.Summary(peers); !slices.Equal(got, []string{"demo-myapp-1=10.42.99.1", "demo-myapp-3=10.42.10.13"}) {
			t.Fatalf("peers %v", got)
		}
	}
	if n := strings.Count(logs.String(), "container skipped"); n != 1 || p.Skipped() != 2 {
		t.Errorf("logged %d times, counted %d; want once and 2", n, p.Skipped())
	}
}

func TestFailuresKeepTheLastSet(t *testing.T) {
	for _, tc := range []struct {
		name      string
		break_    func(f *fakeMetadata)
		transient bool
	}{
		{"404", func(f *fakeMetadata) { f.remove("/latest/self/service") }, false},
		{"500", func(f *fakeMetadata) {
			f.failWith(func(string) (int, string) { return 500, "Internal Server Error" })
		}, true},
		{"malformed JSON", func(f *fakeMetadata) {
			f.failWith(func(string) (int, string) { return 200, `{"containers": [{"name": "x",` })
		}, true},
		{"connection refused", func(f *fakeMetadata) { f.srv.Close() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := newFakeMetadata(t)
			meta.load("/latest/self/service", "latest_self_service.json")
			p, _ := newProvider(t, meta, Options{AnyHealth: true})
			rec := &bridgetest.Recorder{}
			loop := bridge.NewLoop(bridge.LoopConfig{
				Service:  bridge.Service{Topology: "myapp", Name: "myapp", Provider: "rancher"},
				Interval: time.Minute, Provider: p, Publishers: []bridge.Publisher{rec},
			})
			loop.Poll(context.Background())
			tc.break_(meta)
			_, err := p.Peers(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, bridge.ErrTransient) != tc.transient {
				t.Errorf("err = %v; transient %v, want %v", err, !tc.transient, tc.transient)
			}
			loop.Poll(context.Background())
			if n := rec.Peers(); n != 2 {
				t.Errorf("%d peers published after the failure, want the last good 2", n)
			}
			if loop.Status().LastError == "" {
				t.Error("the failure is not in the status")
			}
		})
	}
}

func TestLongPoll(t *testing.T) {
	meta := newFakeMetadata(t)
	p, _ := newProvider(t, meta, Options{Wait: time.Second})
	woken := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Notify(ctx, func() { woken <- struct{}{} }); close(done) }()

	// A long-poll that times out answers the same version: no wake.
	time.Sleep(2500 * time.Millisecond)
	select {
	case <-woken:
		t.Fatal("woken without a change")
	default:
	}
	var waits int
	for _, r := range meta.log() {
		q := r.URL.Query()
		if q.Get("wait") == "true" {
			waits++
			if q.Get("value") != "862fe1d9-d27f-443e-ab64-af15a75095a6" || q.Get("maxWait") != "1" {
				t.Errorf("long-poll %s: want value=<current> and maxWait=1", r.URL.RawQuery)
			}
		}
	}
	if waits < 2 {
		t.Errorf("%d long-polls in 2.5s with maxWait=1, want at least 2", waits)
	}

	meta.bump()
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake after a version change")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify did not return after cancel")
	}
	if p.Wakeups() != 1 {
		t.Errorf("%d wakeups, want 1", p.Wakeups())
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		opts    Options
		setting string
	}{
		{Options{URL: "rancher-metadata"}, "RANCHER_URL"},
		{Options{URL: "ftp://rancher-metadata"}, "RANCHER_URL"},
		{Options{Version: "../etc"}, "RANCHER_VERSION"},
		{Options{Version: ".."}, "RANCHER_VERSION"},
		{Options{Version: "latest?x=1"}, "RANCHER_VERSION"},
		{Options{Wait: 121 * time.Second}, "RANCHER_WAIT"},
		{Options{Wait: 1500 * time.Millisecond}, "RANCHER_WAIT"},
		{Options{Wait: -time.Second}, "RANCHER_WAIT"},
		{Options{Services: []string{"myapp"}}, "RANCHER_SERVICES"},
		{Options{Services: []string{"demo/my/app"}}, "RANCHER_SERVICES"},
	} {
		_, err := New(tc.opts)
		ses := bridge.SettingErrors(err)
		if len(ses) != 1 || ses[0].Setting != tc.setting {
			t.Errorf("New(%+v) = %v, want one problem with %s", tc.opts, err, tc.setting)
		}
	}
	err := Options{URL: "x", Version: "..", Wait: time.Hour}.Validate()
	if n := len(bridge.SettingErrors(err)); n != 3 {
		t.Errorf("Validate found %d problems, want all 3: %v", n, err)
	}
}

// TestEndToEnd runs the fake metadata server through the provider, the
// loop with its long-poll, and the DNS server, and measures how long a
// change takes to reach a DNS answer when the polling interval is a minute.
func TestEndToEnd(t *testing.T) {
	meta := newFakeMetadata(t)
	meta.load("/latest/self/service", "latest_self_service.json")
	p, _ := newProvider(t, meta, Options{Wait: 30 * time.Second})

	srv, dnsAddr := dnstest.Serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "myapp", Name: "myapp", Provider: "rancher"},
		Interval: time.Minute, Provider: p, Publishers: []bridge.Publisher{srv},
	})
	wg.Go(func() { loop.Run(ctx) })

	answer := func() []string {
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeA), dnsAddr)
		if err != nil {
			return nil
		}
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.A).A.String())
		}
		slices.Sort(out)
		return out
	}
	waitAnswer := func(want []string) time.Duration {
		start := time.Now()
		for !slices.Equal(answer(), want) {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("DNS answers %v after 20s, want %v", answer(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitAnswer([]string{"10.42.10.11"})
	// Let the long-poll settle on the current version before changing it.
	time.Sleep(200 * time.Millisecond)

	// demo-myapp-2 recovers: Rancher reloads the metadata.
	meta.mu.Lock()
	containerNamed(containersOf(meta.docs["/latest/self/service"], ""), "demo-myapp-2")["health_state"] = "healthy"
	meta.mu.Unlock()
	meta.bump()
	took := waitAnswer([]string{"10.42.10.11", "10.42.10.12"})
	t.Logf("version change to DNS answer: %v (polling interval 1m)", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("the change took %v: the long-poll did not pull the poll forward", took)
	}
}
