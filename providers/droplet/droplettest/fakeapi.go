// Package droplettest is a fake of DigitalOcean's Droplet API for tests:
// GET /v2/droplets answered as the real API does, from the API's own
// example listings (the droplet provider's testdata): bearer
// authentication, the tag_name and name filters, per_page (default 20, at
// most 200), links with first/prev/next/last, meta.total, error bodies,
// and rate-limit headers on every answer, errors included.
package droplettest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Token is the token the fake accepts.
const Token = "dop_v1_0123456789abcdefSECRETTOKEN"

// Fault makes the fake answer a request for page with status and body
// instead; status 0 answers normally. header is added to the answer. A
// body's $AUTHORIZATION becomes the request's Authorization header, as
// APIs and proxies that echo the request do.
type Fault func(page int) (status int, body string, header http.Header)

// State is what a test may change while the fake runs (API.Set).
type State struct {
	// Droplets are the JSON objects listed, in the API's shape.
	Droplets []map[string]any
	// LastLinks shapes the links of the last (or only) page: "absent",
	// "empty" ({}), or "pages" ({"pages": {}}, the default).
	LastLinks string
	// Fault, if set, may answer a request instead.
	Fault Fault
	// Remaining is the next answer's RateLimit-Remaining (of 5000).
	// With Spend, every request takes one first; without, it stays as
	// set: what the token's other users leave.
	Remaining int
	Spend     bool
	// Reset is RateLimit-Reset; zero means an hour after each answer.
	Reset time.Time
	// Hook, when set, answers every request instead, outside the fake's
	// lock (an answer that never ends, a redirect elsewhere).
	Hook http.HandlerFunc
}

// API is the fake.
type API struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	state    State
	requests []url.Values
	// pages caches the bodies of pages by query, until the next Set: a
	// large listing is encoded once, so that the fake's own CPU stays out
	// of benchmarks.
	pages map[string][]byte
}

// New starts a fake listing droplets, with 5000 requests left of 5000,
// each request spending one.
func New(t testing.TB, droplets []map[string]any) *API {
	a := &API{t: t, state: State{Droplets: droplets, LastLinks: "pages", Remaining: 5000, Spend: true}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// URL is the API's base URL, as the provider's APIURL option takes it.
func (a *API) URL() string { return a.srv.URL + "/" }

// Set changes the fake's state under its lock.
func (a *API) Set(fn func(s *State)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(&a.state)
	a.pages = nil
}

// Requests returns the query of every request answered so far.
func (a *API) Requests() []url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// Count returns the number of requests so far whose query matches.
func (a *API) Count(match func(q url.Values) bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, q := range a.requests {
		if match(q) {
			n++
		}
	}
	return n
}

// ServeHTTP answers as the fake, for a test that serves it on a
// listener of its own (another network namespace).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.serve(w, r) }

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if hook := a.state.Hook; hook != nil {
		a.mu.Unlock()
		hook(w, r)
		return
	}
	defer a.mu.Unlock()
	q := r.URL.Query()
	a.requests = append(a.requests, q)
	if a.state.Spend {
		a.state.Remaining--
	}
	reset := a.state.Reset
	if reset.IsZero() {
		reset = time.Now().Add(time.Hour)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("ratelimit-limit", "5000")
	h.Set("ratelimit-remaining", strconv.Itoa(a.state.Remaining))
	h.Set("ratelimit-reset", strconv.FormatInt(reset.Unix(), 10))

	if r.Method != http.MethodGet || r.URL.Path != "/v2/droplets" {
		reply(w, http.StatusNotFound, Fixture(a.t, "error_404_not_found.json"))
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token {
		reply(w, http.StatusUnauthorized, Fixture(a.t, "error_401_unauthorized.json"))
		return
	}
	if q.Has("tag_name") && q.Has("name") {
		reply(w, http.StatusUnprocessableEntity, `{"id":"unprocessable_entity","message":"tag_name cannot be combined with name"}`)
		return
	}
	page := intParam(q, "page", 1)
	if a.state.Fault != nil {
		if status, body, extra := a.state.Fault(page); status != 0 {
			body = strings.ReplaceAll(body, "$AUTHORIZATION", r.Header.Get("Authorization"))
			for k, v := range extra {
				h[k] = v
			}
			reply(w, status, body)
			return
		}
	}
	body, ok := a.pages[r.URL.RawQuery]
	if !ok {
		body = a.page(q, page)
		if a.pages == nil {
			a.pages = map[string][]byte{}
		}
		a.pages[r.URL.RawQuery] = body
	}
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// page encodes one page of the listing for query q.
func (a *API) page(q url.Values, page int) []byte {
	perPage := min(intParam(q, "per_page", 20), 200)
	var matched []map[string]any
	for _, d := range a.state.Droplets {
		if tag := q.Get("tag_name"); tag != "" && !hasTag(d, tag) {
			continue
		}
		if name := q.Get("name"); name != "" && !strings.EqualFold(d["name"].(string), name) {
			continue
		}
		matched = append(matched, d)
	}
	last := max(1, (len(matched)+perPage-1)/perPage)
	from, to := min((page-1)*perPage, len(matched)), min(page*perPage, len(matched))
	body := map[string]any{"droplets": matched[from:to], "meta": map[string]any{"total": len(matched)}}

	link := func(p int) string {
		v := url.Values{}
		for k := range q {
			v.Set(k, q.Get(k))
		}
		v.Set("page", strconv.Itoa(p))
		// DigitalOcean's links are absolute, to its own host.
		return "https://api.digitalocean.com/v2/droplets?" + v.Encode()
	}
	pages := map[string]string{}
	if page > 1 {
		pages["first"], pages["prev"] = link(1), link(page-1)
	}
	if page < last {
		pages["next"], pages["last"] = link(page+1), link(last)
	}
	switch {
	case len(pages) > 0:
		body["links"] = map[string]any{"pages": pages}
	case a.state.LastLinks == "empty":
		body["links"] = map[string]any{}
	case a.state.LastLinks == "pages":
		body["links"] = map[string]any{"pages": map[string]any{}}
	}
	out, err := json.Marshal(body)
	if err != nil {
		a.t.Error(err)
	}
	return out
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

func hasTag(d map[string]any, tag string) bool {
	for _, t := range d["tags"].([]any) {
		if t == tag {
			return true
		}
	}
	return false
}

// Fixture returns a file of the droplet provider's testdata: the API's
// own examples and errors.
func Fixture(t testing.TB, name string) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FixtureDroplets returns the droplets of a listing fixture as JSON
// objects.
func FixtureDroplets(t testing.TB, name string) []map[string]any {
	t.Helper()
	var body struct {
		Droplets []map[string]any `json:"droplets"`
	}
	if err := json.Unmarshal([]byte(Fixture(t, name)), &body); err != nil {
		t.Fatal(err)
	}
	return body.Droplets
}

// Copy returns a deep copy of droplet d.
func Copy(t testing.TB, d map[string]any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// MakeDroplets returns n droplets shaped as the API's example, named
// node-<i>, with private addresses in 10.0.0.0/8, public ones in
// 203.0.113.0/24-ish space and IPv6 in 2001:db8::/32.
func MakeDroplets(t testing.TB, n int) []map[string]any {
	t.Helper()
	template := FixtureDroplets(t, "droplets_list_all.json")[0]
	out := make([]map[string]any, n)
	for i := range out {
		d := Copy(t, template)
		d["id"] = 1000 + i
		d["name"] = fmt.Sprintf("node-%d", i)
		d["tags"] = []any{"web"}
		SetAddrs(d,
			fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			fmt.Sprintf("198.%d.%d.%d", 18+i>>16&1, i>>8&255, i&255),
			fmt.Sprintf("2001:db8::%x", i+1))
		out[i] = d
	}
	return out
}

// SetAddrs replaces a droplet's networks; an empty address is left out.
func SetAddrs(d map[string]any, private, public, v6 string) {
	v4 := []any{}
	if private != "" {
		v4 = append(v4, map[string]any{"ip_address": private, "netmask": "255.255.0.0", "gateway": "nil", "type": "private"})
	}
	if public != "" {
		v4 = append(v4, map[string]any{"ip_address": public, "netmask": "255.255.240.0", "gateway": "198.18.0.1", "type": "public"})
	}
	v6s := []any{}
	if v6 != "" {
		v6s = append(v6s, map[string]any{"ip_address": v6, "netmask": 64, "gateway": "2001:db8::1", "type": "public"})
	}
	d["networks"] = map[string]any{"v4": v4, "v6": v6s}
}
