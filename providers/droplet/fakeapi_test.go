package droplet

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "dop_v1_0123456789abcdefSECRETTOKEN"

// fakeAPI answers GET /v2/droplets as DigitalOcean does: bearer auth,
// tag_name and name filters, per_page (default 20, at most 200), links
// with first/prev/next/last, meta.total, and rate-limit headers on every
// answer, errors included.
type fakeAPI struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	droplets []map[string]any
	requests []url.Values
	// lastLinks shapes the links of the last (or only) page: "absent",
	// "empty" ({}), or "pages" ({"pages": {}}).
	lastLinks string
	// fail, when it returns a status, answers a request with it instead.
	fail      func(page int) (status int, body string, header http.Header)
	remaining int
	// hook, when set, answers every request instead, outside the lock
	// (an answer that never ends).
	hook http.HandlerFunc
}

func newFakeAPI(t testing.TB, droplets []map[string]any) *fakeAPI {
	f := &fakeAPI{t: t, droplets: droplets, lastLinks: "pages", remaining: 5000}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) url() string { return f.srv.URL + "/" }

func (f *fakeAPI) set(fn func(f *fakeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAPI) requestLog() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.requests...)
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if hook := f.hook; hook != nil {
		f.mu.Unlock()
		hook(w, r)
		return
	}
	defer f.mu.Unlock()
	q := r.URL.Query()
	f.requests = append(f.requests, q)
	f.remaining--
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("ratelimit-limit", "5000")
	h.Set("ratelimit-remaining", strconv.Itoa(f.remaining))
	h.Set("ratelimit-reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))

	if r.Method != http.MethodGet || r.URL.Path != "/v2/droplets" {
		f.reply(w, http.StatusNotFound, fixture(f.t, "error_404_not_found.json"))
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		f.reply(w, http.StatusUnauthorized, fixture(f.t, "error_401_unauthorized.json"))
		return
	}
	if q.Has("tag_name") && q.Has("name") {
		f.reply(w, http.StatusUnprocessableEntity, `{"id":"unprocessable_entity","message":"tag_name cannot be combined with name"}`)
		return
	}
	page, perPage := intParam(q, "page", 1), min(intParam(q, "per_page", 20), 200)
	if f.fail != nil {
		if status, body, extra := f.fail(page); status != 0 {
			// An API that echoes the request into its error, as some
			// proxies and gateways do.
			body = strings.ReplaceAll(body, "$AUTHORIZATION", r.Header.Get("Authorization"))
			for k, v := range extra {
				h[k] = v
			}
			f.reply(w, status, body)
			return
		}
	}

	var matched []map[string]any
	for _, d := range f.droplets {
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
	case f.lastLinks == "empty":
		body["links"] = map[string]any{}
	case f.lastLinks == "pages":
		body["links"] = map[string]any{"pages": map[string]any{}}
	}
	out, err := json.Marshal(body)
	if err != nil {
		f.t.Error(err)
	}
	f.reply(w, http.StatusOK, string(out))
}

func (f *fakeAPI) reply(w http.ResponseWriter, status int, body string) {
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

func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fixtureDroplets returns the droplets of a listing fixture as JSON
// objects.
func fixtureDroplets(t testing.TB, name string) []map[string]any {
	t.Helper()
	var body struct {
		Droplets []map[string]any `json:"droplets"`
	}
	if err := json.Unmarshal([]byte(fixture(t, name)), &body); err != nil {
		t.Fatal(err)
	}
	return body.Droplets
}

// makeDroplets returns n droplets shaped as the API's example, named
// node-<i>, with private addresses in 10.0.0.0/8, public ones in
// 203.0.113.0/24-ish space and IPv6 in 2001:db8::/32.
func makeDroplets(t testing.TB, n int) []map[string]any {
	t.Helper()
	template := fixtureDroplets(t, "droplets_list_all.json")[0]
	raw, err := json.Marshal(template)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, n)
	for i := range out {
		var d map[string]any
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		d["id"] = 1000 + i
		d["name"] = fmt.Sprintf("node-%d", i)
		d["tags"] = []any{"web"}
		setAddrs(d,
			fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			fmt.Sprintf("198.%d.%d.%d", 18+i>>16&1, i>>8&255, i&255),
			fmt.Sprintf("2001:db8::%x", i+1))
		out[i] = d
	}
	return out
}

// setAddrs replaces a droplet's networks; an empty address is left out.
func setAddrs(d map[string]any, private, public, v6 string) {
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
