package droplet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
)

func newProvider(t testing.TB, api *droplettest.API, opts Options) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	return newProviderAt(t, api.URL(), opts)
}

// newProviderAt is newProvider for a fake served at url.
func newProviderAt(t testing.TB, url string, opts Options) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	logs := &bridgetest.Buffer{}
	opts.Token = droplettest.Token
	opts.APIURL = url
	if opts.Network == "" {
		opts.Network = Private
	}
	if !opts.IPVersion.V4 && !opts.IPVersion.V6 {
		opts.IPVersion = IPVersion{V4: true}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, logs
}

func TestFixtureListing(t *testing.T) {
	api := droplettest.New(t, droplettest.FixtureDroplets(t, "droplets_list_all.json"))
	p, _ := newProvider(t, api, Options{})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"assets.example.com=10.128.192.138", "example.com=10.128.192.124", "stage.example.com=10.128.192.125"}
	if got := bridgetest.Summary(peers); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
	var web bridge.Peer
	for _, p := range peers {
		if p.Name == "example.com" {
			web = p
		}
	}
	wantAttrs := map[string]string{
		"droplet_id": "3164444", "name": "example.com", "region": "nyc3", "size": "s-1vcpu-1gb",
		"vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000", "image": "ubuntu-20-04-x64", "tags": "env:prod,web",
	}
	if web.ID != "3164444" || !maps.Equal(web.Attrs, wantAttrs) || web.Health != bridge.HealthUnknown {
		t.Errorf("peer = %+v, want id 3164444 and attrs %v", web, wantAttrs)
	}
	if q := api.Requests(); len(q) != 1 || q[0].Get("per_page") != "200" || q[0].Get("page") != "1" {
		t.Errorf("requests %v, want one with page=1&per_page=200", q)
	}
	if limit, remaining := p.RateLimit(); limit != 5000 || remaining != 4999 {
		t.Errorf("rate limit %d/%d, want 4999 of 5000 left", remaining, limit)
	}
}

func TestFilters(t *testing.T) {
	all := droplettest.FixtureDroplets(t, "droplets_list_all.json")
	stopped := droplettest.MakeDroplets(t, 2)
	stopped[0]["status"], stopped[1]["status"] = "off", "new"
	for _, tc := range []struct {
		name  string
		opts  Options
		query string // the filter the API must receive
		want  []string
	}{
		{"tag is sent to the server", Options{Tag: "env:prod"}, "tag_name=env:prod",
			[]string{"assets.example.com=10.128.192.138", "example.com=10.128.192.124"}},
		{"name is sent to the server", Options{Name: "stage.example.com"}, "name=stage.example.com",
			[]string{"stage.example.com=10.128.192.125"}},
		{"region matches", Options{Region: "NYC3"}, "", []string{
			"assets.example.com=10.128.192.138", "example.com=10.128.192.124", "stage.example.com=10.128.192.125"}},
		{"other region", Options{Region: "ams3"}, "", nil},
		{"vpc", Options{VPC: "5a4981aa-9653-4bd1-bef5-d6bff52042e4"}, "", []string{"stage.example.com=10.128.192.125"}},
		{"public v4", Options{Network: Public, Tag: "env:prod"}, "tag_name=env:prod",
			[]string{"assets.example.com=162.243.0.4", "example.com=192.241.165.154"}},
		{"v6 only", Options{IPVersion: IPVersion{V6: true}}, "", []string{"example.com=2604:a880:0:1010::18a:a001"}},
		{"both families", Options{IPVersion: IPVersion{V4: true, V6: true}, Name: "example.com"}, "name=example.com",
			[]string{"example.com=10.128.192.124,2604:a880:0:1010::18a:a001"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := droplettest.New(t, append(slices.Clone(all), stopped...))
			p, _ := newProvider(t, api, tc.opts)
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := bridgetest.Summary(peers); !slices.Equal(got, tc.want) {
				t.Errorf("peers %v, want %v", got, tc.want)
			}
			q := api.Requests()[0]
			if tc.query != "" {
				k, v, _ := strings.Cut(tc.query, "=")
				if q.Get(k) != v {
					t.Errorf("query %v lacks %s", q, tc.query)
				}
			} else if q.Has("tag_name") || q.Has("name") {
				t.Errorf("query %v has a server-side filter", q)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{IPVersion: IPVersion{V4: true}}, "DIGITALOCEAN_TOKEN"},
		{Options{Token: "x", Tag: "a", Name: "b", IPVersion: IPVersion{V4: true}}, "not both"},
		{Options{Token: "x"}, "no IP version"},
		{Options{Token: "x", IPVersion: IPVersion{V4: true}, APIURL: "ftp://x"}, "DROPLET_API_URL: \"ftp://x\" is not an http(s) URL"},
		{Options{Token: "x", IPVersion: IPVersion{V4: true}, MetadataURL: "169.254.169.254"}, "DROPLET_METADATA_URL: "},
		{Options{Token: "x", IPVersion: IPVersion{V4: true}, Network: "vpc"}, "DROPLET_NETWORK: "},
	} {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error saying %q", tc.opts, err, tc.want)
		}
	}
	for _, s := range []string{"", "7", "ipv4"} {
		if _, err := ParseIPVersion(s); err == nil {
			t.Errorf("ParseIPVersion(%q) accepted", s)
		}
	}
	if _, err := ParseNetwork("vpc"); err == nil {
		t.Error("ParseNetwork(vpc) accepted")
	}
}

func TestMissingAddressSkippedLoggedOnce(t *testing.T) {
	droplets := droplettest.MakeDroplets(t, 3)
	droplettest.SetAddrs(droplets[1], "", "198.18.0.9", "") // public only
	api := droplettest.New(t, droplets)
	p, logs := newProvider(t, api, Options{})
	for range 3 {
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 2 {
			t.Fatalf("%d peers, want 2", len(peers))
		}
	}
	if n := strings.Count(logs.String(), "droplet skipped"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs)
	}
	if p.Skipped() != 3 {
		t.Errorf("skipped %d, want 3 (one per poll)", p.Skipped())
	}
}

func TestPaging(t *testing.T) {
	for _, last := range []string{"absent", "empty", "pages"} {
		t.Run("last page links "+last, func(t *testing.T) {
			api := droplettest.New(t, droplettest.MakeDroplets(t, 450))
			api.Set(func(s *droplettest.State) { s.LastLinks = last })
			p, _ := newProvider(t, api, Options{Tag: "web"})
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(peers) != 450 {
				t.Fatalf("%d peers, want 450", len(peers))
			}
			reqs := api.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3 (pages of 200)", len(reqs))
			}
			for i, q := range reqs {
				if q.Get("page") != fmt.Sprint(i+1) || q.Get("per_page") != "200" || q.Get("tag_name") != "web" {
					t.Errorf("request %d: %v", i+1, q)
				}
			}
		})
	}
	t.Run("the API's own two-page example", func(t *testing.T) {
		mux := http.NewServeMux()
		mux.HandleFunc("/v2/droplets", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, droplettest.Fixture(t, "derived_droplets_per_page_2_page_"+r.URL.Query().Get("page")+".json"))
		})
		srv := httptest.NewServer(mux)
		defer srv.Close()
		p, err := New(Options{Token: droplettest.Token, APIURL: srv.URL, IPVersion: IPVersion{V4: true}})
		if err != nil {
			t.Fatal(err)
		}
		peers, err := p.Peers(context.Background())
		if err != nil || len(peers) != 3 {
			t.Fatalf("%d peers, %v; want the 3 droplets of both pages", len(peers), err)
		}
	})
	t.Run("a next link that does not advance fails the poll", func(t *testing.T) {
		mux := http.NewServeMux()
		mux.HandleFunc("/v2/droplets", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"droplets":[],"links":{"pages":{"next":"https://api.digitalocean.com/v2/droplets?page=1"}}}`)
		})
		srv := httptest.NewServer(mux)
		defer srv.Close()
		p, _ := New(Options{Token: droplettest.Token, APIURL: srv.URL, IPVersion: IPVersion{V4: true}})
		if _, err := p.Peers(context.Background()); err == nil || !errors.Is(err, bridge.ErrTransient) {
			t.Fatalf("err = %v, want a transient paging error", err)
		}
	})
}

func TestFailures(t *testing.T) {
	type check func(t *testing.T, err error)
	transient := func(t *testing.T, err error) {
		if !errors.Is(err, bridge.ErrTransient) {
			t.Errorf("%v is not transient", err)
		}
	}
	tests := []struct {
		name  string
		fail  func(page int) (int, string, http.Header)
		token string
		check check
	}{
		{"401 is a credentials problem", nil, "dop_v1_wrong", func(t *testing.T, err error) {
			if errors.Is(err, bridge.ErrTransient) || !errors.Is(err, bridge.ErrCredentials) ||
				!strings.Contains(err.Error(), "(HTTP 401, check DIGITALOCEAN_TOKEN)") {
				t.Errorf("err = %v", err)
			}
		}},
		{"403 is a credentials problem", func(int) (int, string, http.Header) {
			return 403, `{"id":"forbidden","message":"You do not have access for the attempted action."}`, nil
		}, "", func(t *testing.T, err error) {
			if !strings.Contains(err.Error(), "HTTP 403") {
				t.Errorf("err = %v", err)
			}
		}},
		{"429 honours retry-after", func(int) (int, string, http.Header) {
			return 429, droplettest.Fixture(t, "error_429_too_many_requests.json"), http.Header{"Retry-After": {"29"}, "Ratelimit-Remaining": {"0"}}
		}, "", func(t *testing.T, err error) {
			transient(t, err)
			var ra bridge.RetryAfterError
			if !errors.As(err, &ra) || ra.RetryAfter() != 29*time.Second {
				t.Errorf("err = %v, want a 29s retry-after", err)
			}
		}},
		{"429 without retry-after waits for the reset", func(int) (int, string, http.Header) {
			reset := fmt.Sprint(time.Now().Add(90 * time.Second).Unix())
			return 429, droplettest.Fixture(t, "error_429_too_many_requests.json"), http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {reset}}
		}, "", func(t *testing.T, err error) {
			var ra bridge.RetryAfterError
			if !errors.As(err, &ra) || ra.RetryAfter() < 80*time.Second || ra.RetryAfter() > 90*time.Second {
				t.Errorf("err = %v, want about 90s", err)
			}
		}},
		{"an error echoing the token is scrubbed", func(int) (int, string, http.Header) {
			return 500, `{"id":"server_error","message":"upstream failed for Authorization: $AUTHORIZATION"}`, nil
		}, "", func(t *testing.T, err error) {
			transient(t, err)
			if !strings.Contains(err.Error(), "Authorization: Bearer [redacted]") {
				t.Errorf("err = %v, want the echoed header with the token redacted", err)
			}
		}},
		{"a plain-text 403 echoing the token is scrubbed", func(int) (int, string, http.Header) {
			return 403, "denied: $AUTHORIZATION", nil
		}, "", func(t *testing.T, err error) {
			if !errors.Is(err, bridge.ErrCredentials) || !strings.Contains(err.Error(), "denied: Bearer [redacted]") {
				t.Errorf("err = %v, want a credentials error with the token redacted", err)
			}
		}},
		{"500", func(int) (int, string, http.Header) {
			return 500, droplettest.Fixture(t, "error_500_server_error.json"), nil
		}, "", transient},
		{"malformed JSON", func(int) (int, string, http.Header) { return 200, `{"droplets": [{"id": 1,`, nil }, "", transient},
		{"wrong JSON shape", func(int) (int, string, http.Header) { return 200, `{"droplets": {"id": "x"}}`, nil }, "", transient},
		{"failing second page", func(page int) (int, string, http.Header) {
			if page == 2 {
				return 500, droplettest.Fixture(t, "error_500_server_error.json"), nil
			}
			return 0, "", nil
		}, "", func(t *testing.T, err error) {
			transient(t, err)
			if !strings.Contains(err.Error(), "page 2") {
				t.Errorf("err = %v, want it to name page 2", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := droplettest.New(t, droplettest.MakeDroplets(t, 250))
			logs := &bridgetest.Buffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			token := droplettest.Token
			if tc.token != "" {
				token = tc.token
			}
			p, err := New(Options{Token: token, APIURL: api.URL(), IPVersion: IPVersion{V4: true}, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			// A loop publishing to a recorder: the first poll succeeds,
			// then the failure must keep all 250 peers published.
			rec := &bridgetest.Recorder{}
			loop := bridge.NewLoop(bridge.LoopConfig{
				Service:  bridge.Service{Topology: "web", Name: "web", Provider: "droplet"},
				Interval: time.Second, Provider: p, Publishers: []bridge.Publisher{rec}, Logger: log,
			})
			if tc.token == "" {
				loop.Poll(context.Background())
			}
			api.Set(func(s *droplettest.State) { s.Fault = tc.fail })
			_, err = p.Peers(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			tc.check(t, err)
			loop.Poll(context.Background())
			if tc.token == "" && rec.Peers() != 250 {
				t.Errorf("after the failure %d peers are published, want the last good 250", rec.Peers())
			}
			for _, text := range []string{err.Error(), logs.String(), loop.Status().LastError} {
				if strings.Contains(text, token) {
					t.Fatalf("the token leaked: %s", text)
				}
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}))
		defer slow.Close()
		p, _ := New(Options{Token: droplettest.Token, APIURL: slow.URL, IPVersion: IPVersion{V4: true},
			HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
		_, err := p.Peers(context.Background())
		if err == nil || !errors.Is(err, bridge.ErrTransient) {
			t.Fatalf("err = %v, want a transient timeout", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		p, _ := New(Options{Token: droplettest.Token, APIURL: "http://" + addr, IPVersion: IPVersion{V4: true}})
		if _, err := p.Peers(context.Background()); err == nil || !errors.Is(err, bridge.ErrTransient) {
			t.Fatalf("err = %v, want a transient error", err)
		}
	})
}

func TestExcludeSelf(t *testing.T) {
	droplets := droplettest.MakeDroplets(t, 3)
	meta := http.NewServeMux()
	meta.HandleFunc("/metadata/v1.json", func(w http.ResponseWriter, r *http.Request) {
		// DigitalOcean's own sample, of droplet 7473395, made ours.
		fmt.Fprint(w, strings.Replace(droplettest.Fixture(t, "metadata_v1.json"), "7473395", "1001", 1))
	})
	metaSrv := httptest.NewServer(meta)
	defer metaSrv.Close()

	p, logs := newProvider(t, droplettest.New(t, droplets), Options{ExcludeSelf: true, MetadataURL: metaSrv.URL + "/metadata/v1/"})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := bridgetest.Summary(peers); !slices.Equal(got, []string{"node-0=10.0.0.0", "node-2=10.0.0.2"}) {
		t.Errorf("peers %v, want node-1 (id 1001) left out", got)
	}
	if !strings.Contains(logs.String(), "droplet_id=1001 region=nyc3") {
		t.Errorf("own droplet not logged:\n%s", logs)
	}

	t.Run("off a droplet nothing is excluded", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := "http://" + ln.Addr().String() + "/metadata/v1/"
		ln.Close()
		p, logs := newProvider(t, droplettest.New(t, droplets), Options{ExcludeSelf: true, MetadataURL: dead})
		for range 2 {
			if peers, err := p.Peers(context.Background()); err != nil || len(peers) != 3 {
				t.Fatalf("%d peers, %v; want all 3", len(peers), err)
			}
		}
		if n := strings.Count(logs.String(), "own droplet unknown"); n != 1 {
			t.Errorf("warned %d times, want once", n)
		}
	})
}
