package platform

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMeter(t *testing.T) {
	headers := http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range headers {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	b := NewMeter()
	client := &http.Client{Transport: b.Transport(nil)}
	get := func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if l, r := b.RateLimit(); l != -1 || r != -1 {
		t.Errorf("before any answer %d/%d", r, l)
	}
	get() // no headers: nothing known yet
	if l, r := b.RateLimit(); l != -1 || r != -1 || b.Requests() != 1 {
		t.Errorf("after an answer without headers %d/%d, %d requests", r, l, b.Requests())
	}
	headers.Set("RateLimit-Limit", "3600")
	headers.Set("RateLimit-Remaining", "0")
	get() // an error answer counts too
	if l, r := b.RateLimit(); l != 3600 || r != 0 || b.Requests() != 2 {
		t.Errorf("rate limit %d/%d, %d requests; want 0/3600, 2", r, l, b.Requests())
	}
	headers.Set("RateLimit-Remaining", "many")
	get() // unreadable: the last good reading stays
	if l, r := b.RateLimit(); l != 3600 || r != 0 {
		t.Errorf("after an unreadable header %d/%d", r, l)
	}
}

func TestParseIPVersion(t *testing.T) {
	for in, want := range map[string]IPVersion{"4": {V4: true}, "6": {V6: true}, "BOTH": {V4: true, V6: true}} {
		got, err := ParseIPVersion(in)
		if err != nil || got != want || (in != "BOTH" && got.String() != in) {
			t.Errorf("ParseIPVersion(%q) = %v (%s), %v", in, got, got, err)
		}
	}
	if _, err := ParseIPVersion("v4"); err == nil {
		t.Error("v4 accepted")
	}
}
