package platform

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

func TestGuardRedirects(t *testing.T) {
	elsewhere := platformtest.NewElsewhere(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "elsewhere")
	}))
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusTemporaryRedirect)
		case "/away":
			elsewhere.Redirect(w, r)
		default:
			io.WriteString(w, "here")
		}
	}))
	defer api.Close()
	var ownCalls int
	base := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { ownCalls++; return nil }}
	c := Guard(base, 1<<20)

	resp, err := c.Get(api.URL + "/moved")
	if err != nil {
		t.Fatalf("a redirect within the origin: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "here" || ownCalls != 1 {
		t.Errorf("within the origin: %q, own policy called %d times", body, ownCalls)
	}

	req, _ := http.NewRequest(http.MethodGet, api.URL+"/away", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err = c.Do(req)
	if resp != nil {
		resp.Body.Close()
	}
	if !errors.Is(err, ErrRedirect) || !strings.Contains(err.Error(), "redirect to http://localhost:") {
		t.Errorf("a redirect elsewhere: %v, want ErrRedirect naming the host only", err)
	}
	if n := len(elsewhere.Requests()); n > 0 {
		t.Errorf("the other host got %d requests", n)
	}
	if base.CheckRedirect == nil || base.Transport != nil {
		t.Error("Guard changed its base client")
	}
}

func TestLimitBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		max     int64
		wantErr bool
	}{{100, false}, {1000, false}, {99, true}, {0, true}} {
		c := Guard(&http.Client{}, tc.max)
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var tooLarge *TooLargeError
		if errors.As(err, &tooLarge) != tc.wantErr || int64(len(body)) > tc.max {
			t.Errorf("cap %d: read %d bytes, error %v", tc.max, len(body), err)
		}
		if tc.wantErr && !strings.Contains(err.Error(), "answer larger than") {
			t.Errorf("error %q does not say the answer was too large", err)
		}
	}
	if got := (&TooLargeError{Max: MaxBody(200, 64<<10)}).Error(); got != "answer larger than 13 MiB" {
		t.Errorf("message %q", got)
	}
}

func TestServerWaitsCapped(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"120"}}, 2 * time.Minute},
		{http.Header{"Retry-After": {"315360000"}}, bridge.MaxRetryAfter},
		{http.Header{"Retry-After": {"9223372036854775807"}}, bridge.MaxRetryAfter},
		{http.Header{"Retry-After": {"-5"}}, 0},
		{http.Header{"Retry-After": {"Fri, 31 Dec 9999 23:59:59 GMT"}}, bridge.MaxRetryAfter},
		{http.Header{"Retry-After": {now.Add(30 * time.Minute).Format(http.TimeFormat)}}, 30 * time.Minute},
		{http.Header{"Retry-After": {"Mon, 01 Jan 2001 00:00:00 GMT"}}, 0},
	} {
		if got := RetryAfter(tc.h, now); got != tc.want {
			t.Errorf("RetryAfter(%v) = %s, want %s", tc.h, got, tc.want)
		}
	}
	for reset, want := range map[string]time.Duration{
		"253402300799":         bridge.MaxRetryAfter, // 9999-12-31
		"9223372036854775807":  bridge.MaxRetryAfter,
		"1796645400":           10 * time.Minute, // now + 10 min
		"1000":                 0,
		"-9223372036854775808": 0,
	} {
		h := http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {reset}}
		if got := UntilReset(h, now); got != want {
			t.Errorf("UntilReset(%s) = %s, want %s", reset, got, want)
		}
	}
}
