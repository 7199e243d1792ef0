package platform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

func TestClassify(t *testing.T) {
	reset := fmt.Sprint(time.Now().Add(90 * time.Second).Unix())
	apiErr := errors.New("api said no")
	type want struct {
		credentials, transient, rateLimited bool
		minWait, maxWait                    time.Duration
		text                                string
	}
	for _, tc := range []struct {
		name   string
		rules  Rules
		status int // 0: no answer
		header http.Header
		err    error
		want   want
	}{
		{"401", Rules{TokenVariable: "DIGITALOCEAN_TOKEN"}, 401, nil, apiErr,
			want{credentials: true, text: "(HTTP 401, check DIGITALOCEAN_TOKEN)"}},
		{"403 without a token variable", Rules{}, 403, nil, apiErr, want{credentials: true, text: "(HTTP 403)"}},
		{"429 with Retry-After seconds", Rules{}, 429, http.Header{"Retry-After": {"29"}}, apiErr,
			want{transient: true, rateLimited: true, minWait: 29 * time.Second, maxWait: 29 * time.Second}},
		{"429 with Retry-After and a reset: Retry-After wins", Rules{WaitForReset: true}, 429,
			http.Header{"Retry-After": {"7"}, "Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {reset}}, apiErr,
			want{transient: true, rateLimited: true, minWait: 7 * time.Second, maxWait: 7 * time.Second}},
		{"429 waiting for the reset", Rules{WaitForReset: true}, 429,
			http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {reset}}, apiErr,
			want{transient: true, rateLimited: true, minWait: 80 * time.Second, maxWait: 90 * time.Second}},
		{"429 with a reset the rules ignore", Rules{}, 429,
			http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {reset}}, apiErr,
			want{transient: true, rateLimited: true}},
		{"429 with budget left does not wait for the reset", Rules{WaitForReset: true}, 429,
			http.Header{"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {reset}}, apiErr,
			want{transient: true, rateLimited: true}},
		{"408", Rules{}, 408, nil, apiErr, want{transient: true}},
		{"500", Rules{}, 500, nil, apiErr, want{transient: true}},
		{"503", Rules{}, 503, nil, apiErr, want{transient: true}},
		{"404 is permanent", Rules{}, 404, nil, apiErr, want{}},
		{"400 is permanent", Rules{}, 400, nil, apiErr, want{}},
		{"no answer", Rules{}, 0, nil, apiErr, want{transient: true}},
		{"cancelled", Rules{}, 0, nil, fmt.Errorf("get: %w", context.Canceled), want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			if tc.status != 0 {
				resp = &http.Response{StatusCode: tc.status, Header: tc.header}
			}
			err := tc.rules.Classify(resp, tc.err)
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap the client's error", err)
			}
			if got := errors.Is(err, bridge.ErrCredentials); got != tc.want.credentials {
				t.Errorf("credentials = %v, want %v (%v)", got, tc.want.credentials, err)
			}
			if got := errors.Is(err, bridge.ErrTransient); got != tc.want.transient {
				t.Errorf("transient = %v, want %v (%v)", got, tc.want.transient, err)
			}
			var ra bridge.RetryAfterError
			if got := errors.As(err, &ra); got != tc.want.rateLimited {
				t.Fatalf("rate limited = %v, want %v (%v)", got, tc.want.rateLimited, err)
			}
			if ra != nil && (ra.RetryAfter() < tc.want.minWait || ra.RetryAfter() > tc.want.maxWait) {
				t.Errorf("wait %s, want %s to %s", ra.RetryAfter(), tc.want.minWait, tc.want.maxWait)
			}
			if !strings.Contains(err.Error(), tc.want.text) {
				t.Errorf("%q lacks %q", err, tc.want.text)
			}
		})
	}
	if err := (Rules{}).Classify(&http.Response{StatusCode: 500}, nil); err != nil {
		t.Errorf("Classify(nil error) = %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"29", 29 * time.Second},
		{" 3 ", 3 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		t.Run(tc.value, func(t *testing.T) {
			if got := RetryAfter(http.Header{"Retry-After": {tc.value}}, now); got != tc.want {
				t.Errorf("RetryAfter(%q) = %s, want %s", tc.value, got, tc.want)
			}
		})
	}
}

func TestUntilReset(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name             string
		remaining, reset string
		want             time.Duration
	}{
		{"spent", "0", "1800000120", 2 * time.Minute},
		{"budget left", "3", "1800000120", 0},
		{"no remaining header", "", "1800000120", 0},
		{"reset past", "0", "1799999000", 0},
		{"reset unreadable", "0", "later", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.remaining != "" {
				h.Set("RateLimit-Remaining", tc.remaining)
			}
			h.Set("RateLimit-Reset", tc.reset)
			if got := UntilReset(h, now); got != tc.want {
				t.Errorf("UntilReset = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestGetJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("Accept") != "application/json" {
				http.Error(w, "header not sent", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, `{"name":"a"}`)
		case "/big":
			fmt.Fprintf(w, `{"name":"%s"}`, strings.Repeat("x", 100))
		case "/malformed":
			fmt.Fprint(w, `{"name":`)
		case "/gone":
			http.Error(w, strings.Repeat("not here ", 40), http.StatusNotFound)
		case "/down":
			http.Error(w, "down", http.StatusBadGateway)
		case "/denied":
			http.Error(w, "who are you", http.StatusUnauthorized)
		case "/slow-down":
			w.Header().Set("Retry-After", "12")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	header := http.Header{"Accept": {"application/json"}}
	get := func(path string, maxBytes int64) (string, error) {
		var v struct{ Name string }
		err := GetJSON(context.Background(), srv.Client(), Rules{}, srv.URL+path, header, maxBytes, &v)
		return v.Name, err
	}
	if name, err := get("/ok", 1024); err != nil || name != "a" {
		t.Fatalf("GetJSON(/ok) = %q, %v", name, err)
	}
	for _, tc := range []struct {
		path        string
		transient   bool
		credentials bool
		text        string
	}{
		{"/big", true, false, "larger than 64 bytes"},
		{"/malformed", true, false, "malformed answer"},
		{"/gone", false, false, `404 Not Found: "not here`},
		{"/down", true, false, "502 Bad Gateway"},
		{"/denied", false, true, "HTTP 401"},
		{"/slow-down", true, false, "retry in 12s"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := get(tc.path, 64)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, bridge.ErrTransient) != tc.transient || errors.Is(err, bridge.ErrCredentials) != tc.credentials {
				t.Errorf("%v: transient %v, credentials %v; want %v, %v", err,
					errors.Is(err, bridge.ErrTransient), errors.Is(err, bridge.ErrCredentials), tc.transient, tc.credentials)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%q lacks %q", err, tc.text)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error text not shortened: %d bytes", len(err.Error()))
			}
		})
	}
	t.Run("connection refused is transient", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		var v any
		if err := GetJSON(context.Background(), http.DefaultClient, Rules{}, url, nil, 64, &v); !errors.Is(err, bridge.ErrTransient) {
			t.Errorf("err = %v, want transient", err)
		}
	})
	t.Run("cancelled is no failure", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var v any
		err := GetJSON(ctx, srv.Client(), Rules{}, srv.URL+"/ok", nil, 64, &v)
		if !errors.Is(err, context.Canceled) || errors.Is(err, bridge.ErrTransient) {
			t.Errorf("err = %v, want context.Canceled alone", err)
		}
	})
}

func TestQuote(t *testing.T) {
	if got := Quote([]byte("  short\n")); got != `"short"` {
		t.Errorf("Quote = %s", got)
	}
	if got := Quote([]byte(strings.Repeat("a", 300))); len(got) != 200+3+2 || !strings.HasSuffix(got, `..."`) {
		t.Errorf("Quote of 300 bytes = %s", got)
	}
}

func TestScrub(t *testing.T) {
	const token = "dop_v1_secretsecret"
	base := Transient(fmt.Errorf("listing: 401 Authorization: Bearer %s: %w", token, bridge.ErrCredentials))
	err := Scrub(base, token, "")
	if strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "Bearer [redacted]") {
		t.Errorf("Scrub = %q", err)
	}
	if !errors.Is(err, bridge.ErrCredentials) || !errors.Is(err, bridge.ErrTransient) {
		t.Errorf("the scrubbed error lost its chain: %v", err)
	}
	rl := &RateLimited{Wait: time.Second, Err: errors.New(token)}
	var ra bridge.RetryAfterError
	if err := Scrub(rl, token); !errors.As(err, &ra) || ra.RetryAfter() != time.Second || strings.Contains(err.Error(), token) {
		t.Errorf("Scrub(rate limit) = %v", err)
	}
	clean := errors.New("nothing secret here")
	if Scrub(clean, token) != clean {
		t.Error("an error without the secret was replaced")
	}
	if Scrub(clean, "e") != clean {
		t.Error("a one-letter secret mangled the text")
	}
	if Scrub(nil, token) != nil {
		t.Error("Scrub(nil) is not nil")
	}
}
