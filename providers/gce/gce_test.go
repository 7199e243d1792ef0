package gce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/gce/gcetest"
)

// Zones of four regions on three continents.
var zones = []string{"europe-west1-b", "europe-west1-c", "us-central1-a", "asia-east1-a"}

// world is a project with mixed statuses in several zones and regions,
// an instance without an external address and one without IPv6.
func world() gcetest.World {
	web := func(env string) map[string]string { return map[string]string{"app": "web", "env": env} }
	noExternal := gcetest.Instance(5, "web-5", "asia-east1-a", "RUNNING", web("prod"))
	noExternal.NetworkInterfaces[0].AccessConfigs = nil
	noExternal.NetworkInterfaces[0].Ipv6AccessConfigs = nil
	noExternal.NetworkInterfaces[0].StackType = "IPV4_ONLY"
	internalV6 := gcetest.Instance(6, "web-6", "us-central1-a", "RUNNING", web("prod"))
	internalV6.NetworkInterfaces[0].Ipv6Address = "fd20:1:2:3:0:0:0:6"
	internalV6.NetworkInterfaces[0].Ipv6AccessConfigs = nil
	return gcetest.World{Zones: zones, Instances: []*compute.Instance{
		gcetest.Instance(0, "web-0", "europe-west1-b", "RUNNING", web("prod"), "http-server", "cluster"),
		gcetest.Instance(1, "web-1", "europe-west1-c", "RUNNING", web("prod")),
		gcetest.Instance(2, "web-2", "europe-west1-b", "TERMINATED", web("prod")),
		gcetest.Instance(3, "web-3", "us-central1-a", "STAGING", web("staging")),
		gcetest.Instance(4, "db-0", "us-central1-a", "RUNNING", map[string]string{"app": "db", "team-name": "data"}),
		noExternal,
		internalV6,
		gcetest.Instance(7, "web-7", "europe-west1-c", "STOPPING", web("prod")),
		gcetest.Instance(8, "web-8", "asia-east1-a", "SUSPENDED", web("prod")),
	}}
}

// adc points Application Default Credentials at the fake's metadata
// server only: no key file, no gcloud file.
func adc(t *testing.T, fake *gcetest.Fake) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("GCE_METADATA_HOST", fake.MetadataHost())
}

// newProvider configures a provider through Configure, as the command
// does, with the fake's API URL.
func newProvider(t *testing.T, fake *gcetest.Fake, env Env) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	env.GceApiUrl = fake.APIURL()
	opts, err := Configure(env)
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	logs := &bridgetest.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, logs
}

func TestListingAggregated(t *testing.T) {
	fake := gcetest.New(t, world())
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{})
	if len(fake.Requests()) != 0 || fake.TokenRequests() != 0 {
		t.Fatal("New made a request")
	}
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"db-0=10.0.4.2", "web-0=10.0.0.2", "web-1=10.0.1.2", "web-5=10.0.5.2", "web-6=10.0.6.2"}
	if got := bridgetest.Summary(peers); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v (RUNNING only)", got, want)
	}
	byName := map[string]bridge.Peer{}
	for _, p := range peers {
		byName[p.Name] = p
	}
	wantAttrs := map[string]string{
		"id": "1000", "zone": "europe-west1-b", "machine_type": "e2-small", "network": "default",
		"label_app": "web", "label_env": "prod", "tags": "cluster,http-server",
	}
	if w := byName["web-0"]; w.ID != "1000" || !maps.Equal(w.Attrs, wantAttrs) {
		t.Errorf("web-0 = %+v, want id 1000 and attrs %v", w, wantAttrs)
	}
	if db := byName["db-0"]; db.Attrs["label_team-name"] != "data" || db.Attrs["zone"] != "us-central1-a" || db.Attrs["tags"] != "" {
		t.Errorf("db-0 attrs %v", db.Attrs)
	}
	for _, p := range peers {
		for k := range p.Attrs {
			if !slices.ContainsFunc(Info.Attrs, func(a string) bool {
				return a == k || strings.HasSuffix(a, "*") && strings.HasPrefix(k, strings.TrimSuffix(a, "*"))
			}) {
				t.Errorf("attribute %s is not in Info.Attrs %v", k, Info.Attrs)
			}
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || p.Requests() != 1 {
		t.Fatalf("%d requests (%d counted), want 1", len(reqs), p.Requests())
	}
	q := reqs[0].URL.Query()
	if reqs[0].URL.Path != "/compute/v1/projects/"+gcetest.Project+"/aggregated/instances" ||
		q.Get("maxResults") != "500" || q.Has("pageToken") || q.Has("filter") {
		t.Errorf("request %v, want aggregated/instances?maxResults=500", reqs[0].URL)
	}
	// The metadata server's token, for the project it named.
	if tok := reqs[0].Token; !strings.HasPrefix(tok, "ya29.metadata-") {
		t.Errorf("token %q is not the metadata server's", tok)
	}
}

func TestZones(t *testing.T) {
	fake := gcetest.New(t, world())
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{GceZones: " europe-west1-b, asia-east1-a,,europe-west1-b"})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := bridgetest.Summary(peers), []string{"web-0=10.0.0.2", "web-5=10.0.5.2"}; !slices.Equal(got, want) {
		t.Errorf("peers %v, want %v", got, want)
	}
	var paths []string
	for _, r := range fake.Requests() {
		paths = append(paths, strings.TrimPrefix(r.URL.Path, "/compute/v1/projects/"+gcetest.Project+"/"))
	}
	if want := []string{"zones/europe-west1-b/instances", "zones/asia-east1-a/instances"}; !slices.Equal(paths, want) {
		t.Errorf("requests %v, want %v (one list per zone)", paths, want)
	}
}

func TestAddressModes(t *testing.T) {
	for _, tc := range []struct {
		address string
		want    []string
		skipped []string
	}{
		{"private", []string{"db-0=10.0.4.2", "web-0=10.0.0.2", "web-1=10.0.1.2", "web-5=10.0.5.2", "web-6=10.0.6.2"}, nil},
		{"public", []string{"db-0=198.18.0.5", "web-0=198.18.0.1", "web-1=198.18.0.2", "web-6=198.18.0.7"}, []string{"web-5"}},
		// web-6's internal IPv6 wins over an external one; web-5 has none.
		{"IPv6", []string{"db-0=2001:db8:5::", "web-0=2001:db8:1::", "web-1=2001:db8:2::", "web-6=fd20:1:2:3::6"}, []string{"web-5"}},
	} {
		t.Run(tc.address, func(t *testing.T) {
			fake := gcetest.New(t, world())
			adc(t, fake)
			p, logs := newProvider(t, fake, Env{GceAddress: tc.address})
			for range 3 {
				peers, err := p.Peers(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if got := bridgetest.Summary(peers); !slices.Equal(got, tc.want) {
					t.Fatalf("peers %v, want %v", got, tc.want)
				}
			}
			if n := strings.Count(logs.String(), "instance skipped"); n != len(tc.skipped) {
				t.Errorf("%d skip lines, want %d (once per instance):\n%s", n, len(tc.skipped), logs)
			}
			for _, name := range tc.skipped {
				if !strings.Contains(logs.String(), "instance="+name) {
					t.Errorf("no skip logged for %s:\n%s", name, logs)
				}
			}
			if p.Skipped() != int64(3*len(tc.skipped)) {
				t.Errorf("skipped %d, want %d (counted every poll)", p.Skipped(), 3*len(tc.skipped))
			}
		})
	}
}

func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		zones  string
		want   []string
	}{
		{"labels.app = web", "", []string{"web-0=10.0.0.2", "web-1=10.0.1.2", "web-5=10.0.5.2", "web-6=10.0.6.2"}},
		{"(labels.app = web) (zone = europe-west1-c)", "", []string{"web-1=10.0.1.2"}},
		{`name != "db-0"`, "us-central1-a", []string{"web-6=10.0.6.2"}},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			fake := gcetest.New(t, world())
			adc(t, fake)
			p, _ := newProvider(t, fake, Env{GceFilter: tc.filter, GceZones: tc.zones})
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := bridgetest.Summary(peers); !slices.Equal(got, tc.want) {
				t.Errorf("peers %v, want %v", got, tc.want)
			}
			for _, r := range fake.Requests() {
				if got := r.URL.Query().Get("filter"); got != tc.filter {
					t.Errorf("filter sent %q, want %q as is", got, tc.filter)
				}
			}
		})
	}
	t.Run("rejected", func(t *testing.T) {
		fake := gcetest.New(t, world())
		adc(t, fake)
		p, _ := newProvider(t, fake, Env{GceFilter: "labels.app ~ web"})
		_, err := p.Peers(context.Background())
		if err == nil || errors.Is(err, bridge.ErrTransient) || errors.Is(err, bridge.ErrCredentials) ||
			!strings.Contains(err.Error(), "Invalid value for field 'filter'") {
			t.Errorf("a filter Compute rejects: %v, want a plain error quoting Compute", err)
		}
	})
}

// many returns n running instances spread over the zones.
func many(n int) gcetest.World {
	w := gcetest.World{Zones: zones}
	for i := range n {
		w.Instances = append(w.Instances, gcetest.Instance(i, fmt.Sprintf("node-%d", i), zones[i%len(zones)], "RUNNING", map[string]string{"app": "web"}))
	}
	return w
}

func TestPagingAndRequests(t *testing.T) {
	t.Run("aggregated", func(t *testing.T) {
		fake := gcetest.New(t, many(1001))
		adc(t, fake)
		p, _ := newProvider(t, fake, Env{})
		for poll := 1; poll <= 3; poll++ {
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(peers) != 1001 {
				t.Fatalf("poll %d: %d peers, want 1001", poll, len(peers))
			}
			if want := int64(3 * poll); p.Requests() != want {
				t.Fatalf("poll %d: %d requests so far, want %d (3 pages a poll)", poll, p.Requests(), want)
			}
		}
		reqs := fake.Requests()
		if reqs[0].URL.Query().Has("pageToken") || !reqs[1].URL.Query().Has("pageToken") || !reqs[2].URL.Query().Has("pageToken") {
			t.Errorf("page tokens not followed: %v %v %v", reqs[0].URL, reqs[1].URL, reqs[2].URL)
		}
		// One token fetched for all of it.
		if n := strings.Count(fmt.Sprint(fake.Tokens()), "ya29."); n != 1 {
			t.Errorf("%d tokens issued, want 1 (reused until expiry)", n)
		}
	})
	t.Run("zones", func(t *testing.T) {
		fake := gcetest.New(t, many(2400)) // 600 a zone: 2 pages each
		adc(t, fake)
		p, _ := newProvider(t, fake, Env{GceZones: "europe-west1-b,us-central1-a"})
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 1200 || p.Requests() != 4 {
			t.Errorf("%d peers in %d requests, want 1200 in 4", len(peers), p.Requests())
		}
	})
}

// always answers every request with a fault; later only pages after the
// first.
func always(code int, body string, h http.Header) gcetest.Fault {
	return func(*http.Request, int) (int, string, http.Header) { return code, body, h }
}

func later(code int, body string) gcetest.Fault {
	return func(_ *http.Request, page int) (int, string, http.Header) {
		if page > 1 {
			return code, body, nil
		}
		return 0, "", nil
	}
}

func TestErrors(t *testing.T) {
	unreachable := func(w *gcetest.World) { w.Unreachable = []string{"us-central1-a"} }
	for _, tc := range []struct {
		name        string
		zones       string
		change      func(w *gcetest.World)
		kind        bridge.FailureKind
		wait        time.Duration
		text        string
		maxRequests int64
	}{
		{name: "forbidden", change: func(w *gcetest.World) { w.Fault = always(403, gcetest.Forbidden, nil) },
			kind: bridge.FailureCredentials, text: "Required 'compute.instances.list' permission"},
		{name: "401", change: func(w *gcetest.World) {
			w.Fault = always(401, gcetest.Error(401, "authError", "Request had invalid authentication credentials."), nil)
		}, kind: bridge.FailureCredentials, text: "HTTP 401"},
		{name: "403 rate limit", change: func(w *gcetest.World) { w.Fault = always(403, gcetest.RateLimitExceeded, nil) },
			kind: bridge.FailureRateLimited, text: "rateLimitExceeded"},
		{name: "403 user rate limit", change: func(w *gcetest.World) {
			w.Fault = always(403, gcetest.Error(403, "userRateLimitExceeded", "User Rate Limit Exceeded"), nil)
		}, kind: bridge.FailureRateLimited},
		{name: "429 with Retry-After", change: func(w *gcetest.World) {
			w.Fault = always(429, gcetest.TooManyRequests, http.Header{"Retry-After": {"7"}})
		}, kind: bridge.FailureRateLimited, wait: 7 * time.Second},
		{name: "500", change: func(w *gcetest.World) { w.Fault = always(500, gcetest.Backend, nil) }, kind: bridge.FailureTransient},
		{name: "502 from a proxy", change: func(w *gcetest.World) {
			w.Fault = always(502, "<html><body>Bad Gateway</body></html>", http.Header{"Content-Type": {"text/html"}})
		}, kind: bridge.FailureTransient, text: "502"},
		{name: "malformed", change: func(w *gcetest.World) { w.Fault = always(200, `{"items": {"zones/a": {"instances": [{"id": `, nil) },
			kind: bridge.FailureTransient},
		{name: "a later page fails", change: func(w *gcetest.World) { w.Fault = later(503, gcetest.Error(503, "backendError", "unavailable")) },
			kind: bridge.FailureTransient, text: "page 2"},
		{name: "unreachables", change: unreachable, kind: bridge.FailureTransient, text: "zones/us-central1-a"},
		{name: "an unreachable zone listed alone", zones: "europe-west1-b,us-central1-a", change: unreachable, kind: bridge.FailureTransient},
		{name: "a zone warning", zones: "europe-west1-b", change: func(w *gcetest.World) {
			w.Fault = func(r *http.Request, _ int) (int, string, http.Header) {
				b, _ := compute.InstanceList{Kind: "compute#instanceList", Warning: &compute.InstanceListWarning{
					Code: "UNREACHABLE", Message: "The resource is unreachable"}}.MarshalJSON()
				return 200, string(b), nil
			}
		}, kind: bridge.FailureTransient, text: "UNREACHABLE"},
		{name: "the same instance on two pages", change: func(w *gcetest.World) {
			w.Fault = func(r *http.Request, page int) (int, string, http.Header) {
				if page < 2 {
					return 0, "", nil
				}
				b, _ := compute.InstanceAggregatedList{Items: map[string]compute.InstancesScopedList{
					"zones/asia-east1-a": {Instances: []*compute.Instance{gcetest.Instance(3, "node-3", "asia-east1-a", "RUNNING", nil)}},
				}}.MarshalJSON()
				return 200, string(b), nil
			}
			// The loop lists a listing whose pages disagree again once.
		}, kind: bridge.FailureTransient, text: "listed twice", maxRequests: 6},
		{name: "a page token that does not move on", change: func(w *gcetest.World) {
			w.Fault = func(r *http.Request, page int) (int, string, http.Header) {
				// Every page, the first included, points to "same".
				b, _ := compute.InstanceAggregatedList{NextPageToken: "same"}.MarshalJSON()
				return 200, string(b), nil
			}
		}, kind: bridge.FailureTransient, text: "does not move on"},
		{name: "project unknown", change: func(w *gcetest.World) {
			w.Fault = always(404, gcetest.Error(404, "notFound", "The resource 'projects/x' was not found"), nil)
		}, kind: bridge.FailureError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := gcetest.New(t, many(600)) // 2 pages
			adc(t, fake)
			p, logs := newProvider(t, fake, Env{GceZones: tc.zones})
			loop, rec, polls := bridgetest.NewLoop("gce", p)
			loop.Poll(context.Background())
			first := rec.Peers()
			if first == 0 {
				t.Fatal("the first poll published nothing")
			}
			fake.Set(tc.change)
			before := p.Requests()
			next, retryAfter := loop.Poll(context.Background())
			st := loop.Status()
			if rec.Peers() != first || len(st.Peers) != first {
				t.Errorf("after the fault %d peers published, want the %d kept", rec.Peers(), first)
			}
			if polls.Failures(tc.kind) != 1 {
				t.Errorf("failure kinds: %s %d, want one %s (%s)", bridge.ClassifyFailure(errors.New(st.LastError)), polls.Failures(tc.kind), tc.kind, st.LastError)
			}
			if !strings.Contains(st.LastError, tc.text) {
				t.Errorf("error %q lacks %q", st.LastError, tc.text)
			}
			if retryAfter != tc.wait || next > 5*time.Minute || next < tc.wait {
				t.Errorf("next poll in %s (retry-after %s), want the loop's backoff and a wait of %s", next, retryAfter, tc.wait)
			}
			// No retries of the SDK's: at most the pages of one listing.
			if n := p.Requests() - before; n > max(tc.maxRequests, 3) {
				t.Errorf("%d requests in the failing poll", n)
			}
			if len(st.LastError) > 600 {
				t.Errorf("error not shortened: %d bytes", len(st.LastError))
			}
			for _, tok := range fake.Tokens() {
				if strings.Contains(st.LastError, tok) || strings.Contains(logs.String(), tok) {
					t.Errorf("the token is in the error or the logs")
				}
			}
			fake.Set(func(w *gcetest.World) { w.Fault, w.Unreachable = nil, nil })
			loop.Poll(context.Background())
			if st := loop.Status(); rec.Peers() != first || st.Failures != 0 {
				t.Errorf("after recovery %d peers, %d failures", rec.Peers(), st.Failures)
			}
		})
	}
}

// TestErrorShape checks that the fake's error bodies are what the SDK
// parses as Google's: a *googleapi.Error with code, message and reason.
func TestErrorShape(t *testing.T) {
	fake := gcetest.New(t, world())
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{})
	fake.Set(func(w *gcetest.World) { w.Fault = always(403, gcetest.RateLimitExceeded, nil) })
	_, err := p.service.Instances.AggregatedList(gcetest.Project).Context(context.Background()).Do()
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != 403 || len(ge.Errors) != 1 || ge.Errors[0].Reason != "rateLimitExceeded" ||
		!strings.HasPrefix(ge.Message, "Quota exceeded") {
		t.Fatalf("the SDK read %#v from the fake's error", err)
	}
}

func TestBodyCap(t *testing.T) {
	old := maxBody
	maxBody = 64 << 10
	t.Cleanup(func() { maxBody = old })
	fake := gcetest.New(t, many(500)) // one page: far more than 64 KiB
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{})
	_, err := p.Peers(context.Background())
	if !errors.Is(err, bridge.ErrTransient) || !strings.Contains(err.Error(), "larger than 65536 bytes") {
		t.Errorf("an answer over the cap: %v, want a transient error", err)
	}
	fake.Set(func(w *gcetest.World) { w.Instances = w.Instances[:10] })
	if peers, err := p.Peers(context.Background()); err != nil || len(peers) != 10 {
		t.Errorf("a small answer: %d peers, %v", len(peers), err)
	}
}

// TestTokenStaysHome: a redirect to another host, or a proxy that echoes
// the request, never carries the token further or into an error.
func TestTokenStaysHome(t *testing.T) {
	var leaked atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		w.Write([]byte(`{}`))
	}))
	defer elsewhere.Close()
	fake := gcetest.New(t, world())
	adc(t, fake)
	p, logs := newProvider(t, fake, Env{})

	fake.Set(func(w *gcetest.World) {
		w.Fault = always(http.StatusFound, "", http.Header{"Location": {elsewhere.URL + "/compute/v1/projects/x/aggregated/instances"}})
	})
	if _, err := p.Peers(context.Background()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("a redirect to another host: %v", err)
	}
	if leaked.Load() != 0 {
		t.Error("the token followed a redirect to another host")
	}

	fake.Set(func(w *gcetest.World) {
		w.Fault = func(r *http.Request, _ int) (int, string, http.Header) {
			return 400, gcetest.Error(400, "badRequest", "bad request with header "+r.Header.Get("Authorization")), nil
		}
	})
	_, err := p.Peers(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Bearer [redacted]") {
		t.Errorf("an echoing proxy: %v, want the token redacted", err)
	}
	for _, tok := range fake.Tokens() {
		if strings.Contains(err.Error(), tok) || strings.Contains(logs.String(), tok) {
			t.Error("the token is in the error or the logs")
		}
	}
}

func TestCredentialSources(t *testing.T) {
	t.Run("service account key", func(t *testing.T) {
		fake := gcetest.New(t, world())
		adc(t, fake)
		key := fake.ServiceAccountKey(t)
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
		p, _ := newProvider(t, fake, Env{})
		if p.opts.Project != gcetest.Project {
			t.Errorf("project %q, want the key's %q", p.opts.Project, gcetest.Project)
		}
		attrs := fmt.Sprint(p.opts.LogAttrs())
		if !strings.Contains(attrs, "GOOGLE_APPLICATION_CREDENTIALS "+key+" (service_account "+gcetest.Account+")") ||
			strings.Contains(attrs, "PRIVATE KEY") {
			t.Errorf("LogAttrs %s", attrs)
		}
		for range 2 {
			if peers, err := p.Peers(context.Background()); err != nil || len(peers) != 5 {
				t.Fatalf("%d peers, %v", len(peers), err)
			}
		}
		reqs := fake.Requests()
		if !strings.HasPrefix(reqs[0].Token, "ya29.sa-") || fake.TokenRequests() != 1 || fake.MetadataRequests() != 0 {
			t.Errorf("token %q, %d token requests, %d metadata requests; want the key's token, fetched once",
				reqs[0].Token, fake.TokenRequests(), fake.MetadataRequests())
		}
	})
	t.Run("gcloud ADC file", func(t *testing.T) {
		fake := gcetest.New(t, world())
		adc(t, fake)
		home := t.TempDir()
		t.Setenv("HOME", home)
		path := fake.UserKey(t, home)
		// A user's credentials name no project.
		if _, err := Configure(Env{GceApiUrl: fake.APIURL()}); len(bridge.SettingErrors(err)) != 1 ||
			bridge.SettingErrors(err)[0].Setting != "GCE_PROJECT" {
			t.Errorf("without a project: %v", err)
		}
		p, _ := newProvider(t, fake, Env{GceProject: gcetest.Project})
		if src := p.opts.CredentialsSource; src != "gcloud ADC file "+path+" (authorized_user)" {
			t.Errorf("source %q", src)
		}
		if _, err := p.Peers(context.Background()); err != nil {
			t.Fatal(err)
		}
		if tok := fake.Requests()[0].Token; !strings.HasPrefix(tok, "ya29.user-") {
			t.Errorf("token %q is not the refresh token's", tok)
		}
	})
	t.Run("metadata server", func(t *testing.T) {
		fake := gcetest.New(t, world())
		adc(t, fake)
		p, _ := newProvider(t, fake, Env{})
		if src := p.opts.CredentialsSource; src != "metadata server "+fake.MetadataHost()+" (GCE_METADATA_HOST)" {
			t.Errorf("source %q", src)
		}
		if p.opts.Project != gcetest.Project {
			t.Errorf("project %q, want the metadata server's", p.opts.Project)
		}
	})
	t.Run("a key file that is not there", func(t *testing.T) {
		fake := gcetest.New(t, world())
		adc(t, fake)
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", t.TempDir()+"/missing.json")
		_, err := Configure(Env{GceAddress: "elastic", GceZones: "Europe West"})
		var ve *bridge.VariableError
		if !errors.As(err, &ve) || ve.Variable != "GOOGLE_APPLICATION_CREDENTIALS" {
			t.Errorf("err = %v, want a GOOGLE_APPLICATION_CREDENTIALS error", err)
		}
		// Every problem, but no missing project: without credentials
		// there is none to default to.
		var got []string
		for _, se := range bridge.SettingErrors(err) {
			got = append(got, se.Setting)
		}
		if want := []string{"GCE_ADDRESS", "GCE_ZONES"}; !slices.Equal(got, want) {
			t.Errorf("setting errors %v, want %v: %v", got, want, err)
		}
	})
	t.Run("a rejected key", func(t *testing.T) {
		fake := gcetest.New(t, world())
		adc(t, fake)
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", fake.ForeignKey(t))
		p, logs := newProvider(t, fake, Env{})
		loop, _, polls := bridgetest.NewLoop("gce", p)
		loop.Poll(context.Background())
		if polls.Failures(bridge.FailureCredentials) != 1 || !strings.Contains(loop.Status().LastError, "invalid_grant") {
			t.Errorf("a key the token endpoint rejects: %q, want a credentials failure", loop.Status().LastError)
		}
		if len(fake.Requests()) != 0 {
			t.Error("the API was called without a token")
		}
		if strings.Contains(logs.String(), "PRIVATE KEY") || strings.Contains(loop.Status().LastError, "PRIVATE KEY") {
			t.Error("the key is in the logs or the error")
		}
	})
}

func TestConfigureErrors(t *testing.T) {
	fake := gcetest.New(t, world())
	adc(t, fake)
	_, err := Configure(Env{GceProject: "Not A Project", GceZones: "europe-west1-b,Zone 1", GceAddress: "elastic", GceApiUrl: "ftp://x"})
	var got []string
	for _, se := range bridge.SettingErrors(err) {
		got = append(got, se.Setting)
	}
	if want := []string{"GCE_ADDRESS", "GCE_PROJECT", "GCE_ZONES", "GCE_API_URL"}; !slices.Equal(got, want) {
		t.Errorf("setting errors %v, want %v: %v", got, want, err)
	}
	if _, err := New(Options{Project: gcetest.Project}); err == nil {
		t.Error("New without credentials")
	}
	opts, err := Configure(Env{GceApiUrl: fake.APIURL(), GceZones: "us-central1-a"})
	if err != nil {
		t.Fatal(err)
	}
	if attrs := fmt.Sprint(opts.LogAttrs()); !strings.Contains(attrs, "gce_zones us-central1-a") || !strings.Contains(attrs, "gce_address private") {
		t.Errorf("LogAttrs %s", attrs)
	}
}

// TestScaleUp: an instance that starts running is published by the next
// poll, and one that stops is gone from it.
func TestScaleUp(t *testing.T) {
	fake := gcetest.New(t, many(600))
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{})
	loop, rec, _ := bridgetest.NewLoop("gce", p)
	loop.Poll(context.Background())
	if rec.Peers() != 600 {
		t.Fatalf("%d peers, want 600", rec.Peers())
	}
	fake.Set(func(w *gcetest.World) {
		w.Instances = append(w.Instances, gcetest.Instance(600, "node-600", "asia-east1-a", "PROVISIONING", nil))
	})
	loop.Poll(context.Background())
	if rec.Peers() != 600 {
		t.Errorf("a PROVISIONING instance was published")
	}
	fake.Set(func(w *gcetest.World) {
		w.Instances[600].Status = "RUNNING"
		w.Instances[0].Status = "STOPPING"
	})
	before := p.Requests()
	loop.Poll(context.Background())
	st := loop.Status()
	names := map[string]bool{}
	for _, peer := range st.Peers {
		names[peer.Name] = true
	}
	// A join is published at once; a peer leaves after the second listing
	// without it (PEERBRIDGE_REMOVE_AFTER's default).
	if len(st.Peers) != 601 || !names["node-600"] || !names["node-0"] {
		t.Errorf("after one poll %d peers (node-600 %v, node-0 %v), want node-600 in and node-0 still in", len(st.Peers), names["node-600"], names["node-0"])
	}
	if n := p.Requests() - before; n != 2 {
		t.Errorf("%d requests for 601 instances, want 2 pages", n)
	}
	loop.Poll(context.Background())
	names = map[string]bool{}
	for _, peer := range loop.Status().Peers {
		names[peer.Name] = true
	}
	if len(names) != 600 || !names["node-600"] || names["node-0"] {
		t.Errorf("after two polls %d peers (node-600 %v, node-0 %v), want node-600 in and node-0 out", len(names), names["node-600"], names["node-0"])
	}
}

func TestLogAttrsRedactsURL(t *testing.T) {
	attrs := fmt.Sprint(Options{APIURL: "https://user:hunter2@psc.example/compute/v1/", CredentialsSource: "metadata server"}.LogAttrs())
	if strings.Contains(attrs, "hunter2") || !strings.Contains(attrs, "metadata server") {
		t.Errorf("LogAttrs %s", attrs)
	}
}
