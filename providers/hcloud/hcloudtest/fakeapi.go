// Package hcloudtest is a fake of the Hetzner Cloud API for tests: GET
// /v1/servers and GET /v1/networks answered as the real API does, in the
// JSON of hcloud-go's schema package (which is the API's own schema):
// bearer authentication, page/per_page (default 25, at most 50),
// meta.pagination, the label_selector, name and status filters,
// {"error":{...}} bodies, and RateLimit-* headers on every answer, errors
// included.
package hcloudtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// Token is the token the fake accepts.
const Token = "hcloudtest0123456789SECRETtokenABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh"

// Limit is the fake's hourly request budget, as Hetzner's default.
const Limit = 3600

// Fault makes the fake answer a request with status and body instead;
// status 0 answers normally. header is added to the answer.
type Fault func(r *http.Request, page int) (status int, body string, header http.Header)

// API is the fake. Change it with Set while a test runs.
type API struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	servers  []schema.Server
	networks []schema.Network
	requests []*url.URL
	fault    Fault
	used     int
	handler  http.Handler
}

// New starts a fake serving servers and networks.
func New(t testing.TB, servers []schema.Server, networks []schema.Network) *API {
	a := &API{t: t, servers: servers, networks: networks}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// URL is the API's base URL, as the provider's APIURL option takes it.
func (a *API) URL() string { return a.srv.URL + "/v1" }

// Set changes the fake's servers, networks or fault under its lock.
func (a *API) Set(fn func(servers *[]schema.Server, networks *[]schema.Network, fault *Fault)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(&a.servers, &a.networks, &a.fault)
}

// Requests returns the requests answered so far.
func (a *API) Requests() []*url.URL {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// Error is an error body as the API sends it.
func Error(code, message string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": message, "details": nil}})
	return string(b)
}

// SetHandler makes h answer every request instead of the fake, outside
// its lock (an answer that never ends, a redirect); nil restores the
// fake.
func (a *API) SetHandler(h http.Handler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handler = h
}

// Handler is the fake's own handler, to serve it behind another host.
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serve) }

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if h := a.handler; h != nil {
		a.mu.Unlock()
		h.ServeHTTP(w, r)
		return
	}
	defer a.mu.Unlock()
	a.requests = append(a.requests, r.URL)
	// Hetzner's budget refills one request a second; the reset is when
	// it would be full again.
	a.used++
	remaining := max(Limit-a.used, 0)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("RateLimit-Limit", strconv.Itoa(Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Duration(Limit-remaining)*time.Second).Unix(), 10))
	h.Set("X-Correlation-Id", fmt.Sprintf("fake-%d", len(a.requests)))

	if r.Header.Get("Authorization") != "Bearer "+Token {
		reply(w, http.StatusUnauthorized, Error("unauthorized", "unable to authenticate"))
		return
	}
	q := r.URL.Query()
	page, perPage := intParam(q, "page", 1), min(intParam(q, "per_page", 25), 50)
	if a.fault != nil {
		if status, body, extra := a.fault(r, page); status != 0 {
			for k, v := range extra {
				h[k] = v
			}
			reply(w, status, body)
			return
		}
	}
	if r.Method != http.MethodGet {
		reply(w, http.StatusMethodNotAllowed, Error("method_not_allowed", "method not allowed"))
		return
	}
	sel, err := ParseSelector(q.Get("label_selector"))
	if err != nil {
		reply(w, http.StatusBadRequest, Error("invalid_input", "invalid label_selector: "+err.Error()))
		return
	}
	switch r.URL.Path {
	case "/v1/servers":
		statuses := q["status"]
		var out []schema.Server
		for _, s := range a.servers {
			if (q.Has("name") && s.Name != q.Get("name")) || !sel(s.Labels) ||
				(len(statuses) > 0 && !slices.Contains(statuses, s.Status)) {
				continue
			}
			out = append(out, s)
		}
		writePage(w, a.t, "servers", out, page, perPage)
	case "/v1/networks":
		var out []schema.Network
		for _, n := range a.networks {
			if (q.Has("name") && n.Name != q.Get("name")) || !sel(n.Labels) {
				continue
			}
			out = append(out, n)
		}
		writePage(w, a.t, "networks", out, page, perPage)
	default:
		reply(w, http.StatusNotFound, Error("not_found", "not found"))
	}
}

// writePage answers with one page of items under key, and meta.pagination
// with the API's nulls.
func writePage[T any](w http.ResponseWriter, t testing.TB, key string, items []T, page, perPage int) {
	total := len(items)
	last := max(1, (total+perPage-1)/perPage)
	from, to := min((page-1)*perPage, total), min(page*perPage, total)
	null := func(p int, ok bool) *int {
		if !ok {
			return nil
		}
		return &p
	}
	b, err := json.Marshal(map[string]any{
		key: append([]T{}, items[from:to]...),
		"meta": map[string]any{"pagination": map[string]any{
			"page": page, "per_page": perPage,
			"previous_page": null(page-1, page > 1), "next_page": null(page+1, page < last),
			"last_page": last, "total_entries": total,
		}},
	})
	if err != nil {
		t.Error(err)
	}
	reply(w, http.StatusOK, string(b))
}

func reply(w http.ResponseWriter, status int, body string) {
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func intParam(q url.Values, key string, def int) int {
	if n, err := strconv.Atoi(q.Get(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// ParseSelector reads Hetzner's label selector syntax: terms joined by
// commas (AND), each k=v (or k==v), k!=v, k (present), !k (absent),
// k in (a,b) or k notin (a,b). An empty selector matches everything.
func ParseSelector(s string) (func(map[string]string) bool, error) {
	var terms []func(map[string]string) bool
	for _, term := range splitTerms(s) {
		term = strings.TrimSpace(term)
		var f func(map[string]string) bool
		switch {
		case term == "":
			continue
		case strings.HasPrefix(term, "!"):
			k := strings.TrimSpace(term[1:])
			f = func(l map[string]string) bool { _, ok := l[k]; return !ok }
		case strings.Contains(term, " in ") || strings.Contains(term, " notin "):
			neg := strings.Contains(term, " notin ")
			k, set, _ := strings.Cut(term, map[bool]string{true: " notin ", false: " in "}[neg])
			set = strings.TrimSpace(set)
			if !strings.HasPrefix(set, "(") || !strings.HasSuffix(set, ")") {
				return nil, fmt.Errorf("%q: a set must be in parentheses", term)
			}
			var vals []string
			for _, v := range strings.Split(set[1:len(set)-1], ",") {
				vals = append(vals, strings.TrimSpace(v))
			}
			k = strings.TrimSpace(k)
			f = func(l map[string]string) bool {
				v, ok := l[k]
				return ok && slices.Contains(vals, v) != neg || !ok && neg
			}
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			f = func(l map[string]string) bool { return l[k] != v || !has(l, k) }
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			k, v = strings.TrimSpace(k), strings.TrimPrefix(strings.TrimSpace(v), "=")
			f = func(l map[string]string) bool { return has(l, k) && l[k] == v }
		default:
			if strings.ContainsAny(term, " ()") {
				return nil, fmt.Errorf("%q is no selector term", term)
			}
			f = func(l map[string]string) bool { return has(l, term) }
		}
		terms = append(terms, f)
	}
	return func(l map[string]string) bool {
		for _, f := range terms {
			if !f(l) {
				return false
			}
		}
		return true
	}, nil
}

func has(l map[string]string, k string) bool { _, ok := l[k]; return ok }

// splitTerms splits at commas outside parentheses.
func splitTerms(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// Server returns a server shaped as the API sends one: id 1000+i, named
// name, with public IPv4 198.18.<i>, public IPv6 /64 2001:db8:<i>::/64, a
// private address 10.<net>.0.<i> in each of networks, and labels.
func Server(i int, name, status, location string, labels map[string]string, networks ...int64) schema.Server {
	id := int64(1000 + i)
	private := []schema.ServerPrivateNet{}
	for _, n := range networks {
		private = append(private, schema.ServerPrivateNet{
			Network: n, IP: fmt.Sprintf("10.%d.%d.%d", n%250, i/250, i%250+2), AliasIPs: []string{},
			MACAddress: fmt.Sprintf("86:00:00:%02x:%02x:%02x", n%256, i/256, i%256),
		})
	}
	if labels == nil {
		labels = map[string]string{}
	}
	loc := Locations[location]
	backup := "22-02"
	return schema.Server{
		ID: id, Name: name, Status: status, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		PublicNet: schema.ServerPublicNet{
			IPv4: schema.ServerPublicNetIPv4{
				ID: 40000 + id, IP: fmt.Sprintf("198.18.%d.%d", i/250, i%250+1),
				DNSPtr: fmt.Sprintf("static.%d.example.your-server.de", id),
			},
			IPv6: schema.ServerPublicNetIPv6{
				ID: 60000 + id, IP: fmt.Sprintf("2001:db8:%x::/64", i+1),
				DNSPtr: []schema.ServerPublicNetIPv6DNSPtr{},
			},
			FloatingIPs: []int64{}, Firewalls: []schema.ServerFirewall{},
		},
		PrivateNet: private,
		ServerType: schema.ServerType{
			ID: 104, Name: "cx23", Description: "CX23", Category: "cost_optimized", Cores: 2, Memory: 4, Disk: 40,
			StorageType: "local", CPUType: "shared", Architecture: "x86",
		},
		IncludedTraffic: 21990232555520,
		BackupWindow:    &backup,
		Location:        loc,
		Image: &schema.Image{
			ID: 161547269, Type: "system", Status: "available", Name: ptr("ubuntu-24.04"),
			Description: "Ubuntu 24.04", OSFlavor: "ubuntu", OSVersion: ptr("24.04"), Architecture: "x86",
		},
		Labels:          labels,
		Volumes:         []int64{},
		PrimaryDiskSize: 40,
		LoadBalancers:   []int64{},
	}
}

func ptr[T any](v T) *T { return &v }

// Locations are Hetzner's, as GET /locations describes them.
var Locations = map[string]schema.Location{
	"fsn1": {ID: 1, Name: "fsn1", Description: "Falkenstein DC Park 1", Country: "DE", City: "Falkenstein", Latitude: 50.47612, Longitude: 12.370071, NetworkZone: "eu-central"},
	"nbg1": {ID: 2, Name: "nbg1", Description: "Nuremberg DC Park 1", Country: "DE", City: "Nuremberg", Latitude: 49.452102, Longitude: 11.076665, NetworkZone: "eu-central"},
	"hel1": {ID: 3, Name: "hel1", Description: "Helsinki DC Park 1", Country: "FI", City: "Helsinki", Latitude: 60.169855, Longitude: 24.938379, NetworkZone: "eu-central"},
	"ash":  {ID: 4, Name: "ash", Description: "Ashburn, VA", Country: "US", City: "Ashburn, VA", Latitude: 39.045821, Longitude: -77.487073, NetworkZone: "us-east"},
}

// Network returns a private network as the API sends one.
func Network(id int64, name string, servers ...int64) schema.Network {
	if servers == nil {
		servers = []int64{}
	}
	return schema.Network{
		ID: id, Name: name, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		IPRange: fmt.Sprintf("10.%d.0.0/16", id%250),
		Subnets: []schema.NetworkSubnet{{
			Type: "cloud", IPRange: fmt.Sprintf("10.%d.0.0/24", id%250), NetworkZone: "eu-central",
			Gateway: fmt.Sprintf("10.%d.0.1", id%250),
		}},
		Routes: []schema.NetworkRoute{}, Servers: servers, LoadBalancers: []int64{},
		Labels: map[string]string{},
	}
}
