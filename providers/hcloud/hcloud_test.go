package hcloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/hcloud/hcloudtest"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

var v4 = platform.IPVersion{V4: true}

func newProvider(t testing.TB, api *hcloudtest.API, opts Options) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	logs := &bridgetest.Buffer{}
	opts.Token = hcloudtest.Token
	opts.APIURL = api.URL()
	if !opts.IPVersion.V4 && !opts.IPVersion.V6 {
		opts.IPVersion = v4
	}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, logs
}

// world is a project with mixed statuses, three locations and two
// private networks: 7 "cluster" and 8 "other".
func world() ([]schema.Server, []schema.Network) {
	web := func(env string) map[string]string { return map[string]string{"app": "web", "env": env} }
	servers := []schema.Server{
		hcloudtest.Server(0, "web-0", "running", "fsn1", web("prod"), 7),
		hcloudtest.Server(1, "web-1", "running", "nbg1", web("prod"), 7, 8),
		hcloudtest.Server(2, "web-2", "off", "fsn1", web("prod"), 7),
		hcloudtest.Server(3, "web-3", "starting", "hel1", web("staging"), 7),
		hcloudtest.Server(4, "web-4", "running", "hel1", web("staging"), 8),
		hcloudtest.Server(5, "db-0", "running", "fsn1", map[string]string{"app": "db", "env": "prod", "example.com/role": "primary"}, 7),
		hcloudtest.Server(6, "bare", "running", "fsn1", nil),
	}
	return servers, []schema.Network{hcloudtest.Network(7, "cluster", 1000, 1001, 1002, 1003, 1005), hcloudtest.Network(8, "other", 1001, 1004)}
}

func TestListing(t *testing.T) {
	api := newWorld(t)
	p, _ := newProvider(t, api, Options{IPVersion: platform.IPVersion{V4: true, V6: true}})
	if limit, remaining := p.RateLimit(); limit != -1 || remaining != -1 {
		t.Errorf("rate limit before any answer %d/%d, want -1/-1", remaining, limit)
	}
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bare=198.18.0.7,2001:db8:7::1", "db-0=198.18.0.6,2001:db8:6::1", "web-0=198.18.0.1,2001:db8:1::1",
		"web-1=198.18.0.2,2001:db8:2::1", "web-4=198.18.0.5,2001:db8:5::1",
	}
	if got := bridgetest.Summary(peers); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
	i := slices.IndexFunc(peers, func(p bridge.Peer) bool { return p.Name == "db-0" })
	wantAttrs := map[string]string{
		"server_id": "1005", "name": "db-0", "location": "fsn1", "server_type": "cx23",
		"labels": "app=db,env=prod,example.com/role=primary",
	}
	if db := peers[i]; db.ID != "1005" || !maps.Equal(db.Attrs, wantAttrs) {
		t.Errorf("db-0 = %+v, want id 1005 and attrs %v", db, wantAttrs)
	}
	reqs := api.Requests()
	if len(reqs) != 1 || p.Requests() != 1 {
		t.Fatalf("%d requests (%d counted), want 1: %v", len(reqs), p.Requests(), reqs)
	}
	if q := reqs[0].Query(); reqs[0].Path != "/v1/servers" || q.Get("page") != "1" || q.Get("per_page") != "50" ||
		!slices.Equal(q["status"], []string{"running"}) || q.Has("label_selector") || q.Has("name") {
		t.Errorf("request %v, want /v1/servers?page=1&per_page=50&status=running", reqs[0])
	}
	if limit, remaining := p.RateLimit(); limit != 3600 || remaining != 3599 {
		t.Errorf("rate limit %d/%d, want 3599 of 3600 left", remaining, limit)
	}
}

func TestFilters(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		query string // the filter the API must receive
		want  []string
	}{
		{"label equals", Options{LabelSelector: "app=web"}, "label_selector=app=web",
			[]string{"web-0=198.18.0.1", "web-1=198.18.0.2", "web-4=198.18.0.5"}},
		{"labels and", Options{LabelSelector: "app=web,env!=staging"}, "label_selector=app=web,env!=staging",
			[]string{"web-0=198.18.0.1", "web-1=198.18.0.2"}},
		{"label present", Options{LabelSelector: "example.com/role"}, "", []string{"db-0=198.18.0.6"}},
		{"label absent", Options{LabelSelector: "!app"}, "", []string{"bare=198.18.0.7"}},
		{"label in a set", Options{LabelSelector: "app in (db,cache),env==prod"}, "", []string{"db-0=198.18.0.6"}},
		{"name", Options{Name: "web-4"}, "name=web-4", []string{"web-4=198.18.0.5"}},
		{"location", Options{Location: "FSN1"}, "", []string{"bare=198.18.0.7", "db-0=198.18.0.6", "web-0=198.18.0.1"}},
		{"location and selector", Options{Location: "hel1", LabelSelector: "app=web"}, "", []string{"web-4=198.18.0.5"}},
		{"network by name", Options{Network: "cluster"}, "", []string{"db-0=10.7.0.7", "web-0=10.7.0.2", "web-1=10.7.0.3"}},
		{"network by id", Options{Network: "8"}, "", []string{"web-1=10.8.0.3", "web-4=10.8.0.6"}},
		{"v6 only", Options{IPVersion: platform.IPVersion{V6: true}, Name: "web-0"}, "", []string{"web-0=2001:db8:1::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newWorld(t)
			p, _ := newProvider(t, api, tc.opts)
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := bridgetest.Summary(peers); !slices.Equal(got, tc.want) {
				t.Errorf("peers %v, want %v", got, tc.want)
			}
			reqs := api.Requests()
			q := reqs[len(reqs)-1].Query()
			if k, v, ok := strings.Cut(tc.query, "="); ok && q.Get(k) != v {
				t.Errorf("query %v lacks %s", q, tc.query)
			}
		})
	}
}

func TestSkippedLoggedOnce(t *testing.T) {
	servers, networks := world()
	noV4 := hcloudtest.Server(9, "v6only", "running", "ash", nil)
	noV4.PublicNet.IPv4 = schema.ServerPublicNetIPv4{}
	api := hcloudtest.New(t, append(servers, noV4), networks)

	p, logs := newProvider(t, api, Options{Network: "cluster"})
	for range 3 {
		if _, err := p.Peers(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// web-4, bare and v6only are in no cluster network: 3 a poll.
	if p.Skipped() != 9 {
		t.Errorf("skipped %d, want 9", p.Skipped())
	}
	if n := strings.Count(logs.String(), "server skipped"); n != 3 {
		t.Errorf("%d skip lines, want 3 (once per server):\n%s", n, logs)
	}

	p, _ = newProvider(t, api, Options{})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(peers, func(p bridge.Peer) bool { return p.Name == "v6only" }) || p.Skipped() != 1 {
		t.Errorf("a server without public IPv4 is published over v4 (skipped %d)", p.Skipped())
	}
}

// manyServers returns n running servers with label app=web, all in
// network 7.
func manyServers(n int) []schema.Server {
	out := make([]schema.Server, n)
	for i := range out {
		out[i] = hcloudtest.Server(i, fmt.Sprintf("node-%d", i), "running", "fsn1", map[string]string{"app": "web"}, 7)
	}
	return out
}

func TestPagingAndRequests(t *testing.T) {
	api := hcloudtest.New(t, manyServers(130), []schema.Network{hcloudtest.Network(7, "cluster")})
	p, _ := newProvider(t, api, Options{LabelSelector: "app=web", Network: "cluster"})
	for poll, want := range []int64{4, 7, 10} { // 3 pages, and the network's name once
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 130 {
			t.Fatalf("poll %d: %d peers, want 130", poll, len(peers))
		}
		if p.Requests() != want {
			t.Fatalf("poll %d: %d requests so far, want %d", poll, p.Requests(), want)
		}
	}
	var pages []string
	for _, r := range api.Requests() {
		pages = append(pages, r.Path+"?page="+r.Query().Get("page"))
	}
	if want := []string{"/v1/networks?page=", "/v1/servers?page=1", "/v1/servers?page=2", "/v1/servers?page=3"}; !slices.Equal(pages[:4], want) {
		t.Errorf("first poll's requests %v, want %v", pages[:4], want)
	}
}

// TestNetworkRecreated: a network deleted and made again under the same
// name has a new ID; the provider looks the name up again when servers
// stop being attached to the old one, and only then.
func TestNetworkRecreated(t *testing.T) {
	api := hcloudtest.New(t, manyServers(3), []schema.Network{hcloudtest.Network(7, "cluster")})
	p, _ := newProvider(t, api, Options{Network: "cluster"})
	poll := func() []string {
		t.Helper()
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return bridgetest.Summary(peers)
	}
	poll()
	poll()
	if p.Requests() != 3 {
		t.Fatalf("%d requests for two polls, want 3", p.Requests())
	}
	api.Set(func(servers *[]schema.Server, networks *[]schema.Network, _ *hcloudtest.Fault) {
		*networks = []schema.Network{hcloudtest.Network(9, "cluster")}
		for i := range *servers {
			(*servers)[i] = hcloudtest.Server(i, fmt.Sprintf("node-%d", i), "running", "fsn1", nil, 9)
		}
	})
	if got, want := poll(), []string{"node-0=10.9.0.2", "node-1=10.9.0.3", "node-2=10.9.0.4"}; !slices.Equal(got, want) {
		t.Fatalf("after the network was recreated: %v, want %v", got, want)
	}
	if p.Requests() != 5 {
		t.Errorf("%d requests, want 5: the name looked up again once", p.Requests())
	}
	// A network that no server is attached to any more costs no lookup
	// on every poll.
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, _ *hcloudtest.Fault) {
		for i := range *servers {
			(*servers)[i].PrivateNet = []schema.ServerPrivateNet{}
		}
	})
	poll()
	before := p.Requests()
	poll()
	poll()
	if p.Requests()-before != 2 {
		t.Errorf("%d requests for two polls of a network without servers, want 2", p.Requests()-before)
	}
}

func TestUnknownNetwork(t *testing.T) {
	api := newWorld(t)
	p, _ := newProvider(t, api, Options{Network: "nope"})
	_, err := p.Peers(context.Background())
	if err == nil || !strings.Contains(err.Error(), `no private network named "nope"`) || errors.Is(err, bridge.ErrTransient) {
		t.Fatalf("Peers = %v, want a permanent error naming the network", err)
	}
}

// TestFaultsKeepTheSet runs every fault through the reconcile loop with
// its shrink guard: each keeps the last good set published.
func TestFaultsKeepTheSet(t *testing.T) {
	later := func(status int, body string) hcloudtest.Fault {
		return func(r *http.Request, page int) (int, string, http.Header) {
			if page < 2 {
				return 0, "", nil
			}
			return status, body, nil
		}
	}
	always := func(status int, body string, header http.Header) hcloudtest.Fault {
		return func(*http.Request, int) (int, string, http.Header) { return status, body, header }
	}
	for _, tc := range []struct {
		name  string
		fault hcloudtest.Fault
		kind  bridge.FailureKind
	}{
		{"server error", always(500, hcloudtest.Error("server_error", "internal error"), nil), "transient"},
		{"bad gateway from a proxy", always(502, "<html>bad gateway</html>", http.Header{"Content-Type": {"text/html"}}), "transient"},
		{"rate limited", always(429, hcloudtest.Error("rate_limit_exceeded", "limit of 3600 requests per hour reached"), http.Header{"RateLimit-Remaining": {"0"}}), "rate_limited"},
		{"malformed JSON", always(200, `{"servers": [{"id": "x"`, nil), "transient"},
		{"a later page fails", later(503, hcloudtest.Error("service_error", "unavailable")), "transient"},
		{"a later page is malformed", later(200, `{"servers": null, "meta": `), "transient"},
		{"rejected token", always(401, hcloudtest.Error("unauthorized", "unable to authenticate"), nil), bridge.FailureCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := hcloudtest.New(t, manyServers(120), nil)
			p, _ := newProvider(t, api, Options{})
			loop, rec, polls := bridgetest.NewLoop("hcloud", p)
			if next, _ := loop.Poll(context.Background()); next != time.Minute || rec.Peers() != 120 {
				t.Fatalf("first poll published %d peers", rec.Peers())
			}
			api.Set(func(_ *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) { *f = tc.fault })
			before := p.Requests()
			next, retryAfter := loop.Poll(context.Background())
			st := loop.Status()
			if rec.Peers() != 120 || len(st.Peers) != 120 {
				t.Errorf("after the fault %d peers published, want the 120 kept", rec.Peers())
			}
			if polls.Failures(tc.kind) != 1 || st.LastError == "" {
				t.Errorf("%d failures of kind %s (%s), want one", polls.Failures(tc.kind), tc.kind, st.LastError)
			}
			if strings.Contains(st.LastError, hcloudtest.Token) {
				t.Errorf("the token is in the error: %s", st.LastError)
			}
			// The SDK's own retries are off: the loop's backoff decides,
			// at most five intervals and no RateLimit-Reset wait.
			if pages := p.Requests() - before; pages > 2 {
				t.Errorf("%d requests in the failing poll: the SDK retried", pages)
			}
			if next > 5*time.Minute || retryAfter != 0 {
				t.Errorf("next poll in %s (retry-after %s), want the loop's backoff", next, retryAfter)
			}

			api.Set(func(_ *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) { *f = nil })
			loop.Poll(context.Background())
			if st := loop.Status(); rec.Peers() != 120 || st.Failures != 0 {
				t.Errorf("after recovery %d peers, %d failures", rec.Peers(), st.Failures)
			}
		})
	}
}

// TestEmptyAnswerOnce: one empty listing is held back by the shrink
// guard; a second confirms it.
func TestEmptyAnswerOnce(t *testing.T) {
	api := hcloudtest.New(t, manyServers(5), nil)
	p, _ := newProvider(t, api, Options{})
	loop, rec, _ := bridgetest.NewLoop("hcloud", p)
	loop.Poll(context.Background())
	empty := func(servers *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) {
		*f = func(r *http.Request, page int) (int, string, http.Header) {
			return 200, `{"servers":[],"meta":{"pagination":{"page":1,"per_page":50,"previous_page":null,"next_page":null,"last_page":1,"total_entries":0}}}`, nil
		}
	}
	api.Set(empty)
	loop.Poll(context.Background())
	if rec.Peers() != 5 || !loop.Status().Held {
		t.Fatalf("one empty answer published %d peers (held %v), want the 5 kept", rec.Peers(), loop.Status().Held)
	}
	api.Set(func(_ *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) { *f = nil })
	loop.Poll(context.Background())
	api.Set(empty)
	loop.Poll(context.Background())
	loop.Poll(context.Background())
	if rec.Peers() != 0 {
		t.Errorf("two empty answers in a row published %d peers, want 0", rec.Peers())
	}
}

func TestScaleUpShowsInTheNextPoll(t *testing.T) {
	api := hcloudtest.New(t, manyServers(50), nil)
	p, _ := newProvider(t, api, Options{})
	loop, rec, _ := bridgetest.NewLoop("hcloud", p)
	loop.Poll(context.Background())
	if rec.Peers() != 50 || p.Requests() != 1 {
		t.Fatalf("%d peers after %d requests", rec.Peers(), p.Requests())
	}
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, _ *hcloudtest.Fault) { *servers = manyServers(51) })
	loop.Poll(context.Background())
	if rec.Peers() != 51 || p.Requests() != 3 {
		t.Errorf("%d peers after scaling up, %d requests; want 51 over 2 pages", rec.Peers(), p.Requests())
	}
}

// TestListingChangedWhilePaging: a server deleted between two pages
// shifts the next page; the count then disagrees with total_entries.
func TestListingChangedWhilePaging(t *testing.T) {
	api := hcloudtest.New(t, manyServers(60), nil)
	p, _ := newProvider(t, api, Options{})
	api.Set(func(servers *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) {
		// Faults run under the fake's lock: the list may change here.
		*f = func(r *http.Request, page int) (int, string, http.Header) {
			if page == 2 && len(*servers) == 60 {
				*servers = (*servers)[1:] // deleted after page 1 was read
			}
			return 0, "", nil
		}
	})
	_, err := p.Peers(context.Background())
	if err == nil || !errors.Is(err, bridge.ErrTransient) || !strings.Contains(err.Error(), "changed while paging") {
		t.Fatalf("Peers = %v, want a transient error", err)
	}
}

// TestHungAPI: a poll ends with its context, whatever the SDK would do.
func TestHungAPI(t *testing.T) {
	api := hcloudtest.New(t, manyServers(1), nil)
	release := make(chan struct{})
	defer close(release)
	api.Set(func(_ *[]schema.Server, _ *[]schema.Network, f *hcloudtest.Fault) {
		*f = func(r *http.Request, _ int) (int, string, http.Header) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return 504, hcloudtest.Error("timeout", "gateway timeout"), nil
		}
	})
	p, _ := newProvider(t, api, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := p.Peers(ctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Peers = %v, want the deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Peers still running 20s after its context ended")
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		setting string
	}{
		{"no ip version", Options{Token: "t0ken"}, "HCLOUD_IP_VERSION"},
		{"v6 in a private network", Options{Token: "t0ken", Network: "cluster", IPVersion: platform.IPVersion{V4: true, V6: true}}, "HCLOUD_IP_VERSION"},
		{"bad url", Options{Token: "t0ken", IPVersion: v4, APIURL: "ftp://x"}, "HCLOUD_API_URL"},
		{"zero network id", Options{Token: "t0ken", IPVersion: v4, Network: "0"}, "HCLOUD_NETWORK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			se := bridge.SettingErrors(err)
			if len(se) != 1 || se[0].Setting != tc.setting {
				t.Errorf("New = %v, want a %s setting error", err, tc.setting)
			}
		})
	}
	if _, err := New(Options{IPVersion: v4}); err == nil || !strings.Contains(err.Error(), "HCLOUD_TOKEN") {
		t.Errorf("New without a token = %v", err)
	}
	if _, err := New(Options{Token: "abc\ndef", IPVersion: v4}); err == nil || strings.Contains(err.Error(), "abc") {
		t.Errorf("New with a newline in the token = %v", err)
	}
}

func newWorld(t testing.TB) *hcloudtest.API {
	servers, networks := world()
	return hcloudtest.New(t, servers, networks)
}
