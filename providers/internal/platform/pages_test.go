package platform

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// pageServer answers /p<n> with bodies[n], and 500 with "down" when
// status says so.
type pageServer struct {
	mu     sync.Mutex
	bodies map[string]string
	status int
}

func (s *pageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 0 {
		w.WriteHeader(s.status)
		io.WriteString(w, "down")
		return
	}
	io.WriteString(w, s.bodies[r.URL.Path])
}

func (s *pageServer) set(path, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies[path] = body
}

// get fetches path within listing l as a provider does: the body the
// "SDK" reads, and what the page gave (a fresh result "decoded:<body>",
// or the kept one).
func get(t *testing.T, client *http.Client, l *Listing[string], base, path string) (read, result string, cached bool) {
	t.Helper()
	ctx, fetch := l.Request(context.Background(), path)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := fetch.Unchanged(); ok {
		return string(b), r, true
	}
	fetch.Keep("decoded:"+string(b), []byte("stub"))
	return string(b), "decoded:" + string(b), false
}

func TestPagesReuseUnchanged(t *testing.T) {
	s := &pageServer{bodies: map[string]string{"/p1": "one", "/p2": "two"}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := &http.Client{Transport: SkipUnchanged(LimitBodies(nil, 1<<20))}
	pages := NewPages[string]()

	l := pages.Begin()
	for _, p := range []string{"/p1", "/p2"} {
		if _, _, cached := get(t, client, l, srv.URL, p); cached {
			t.Fatalf("%s cached on the first listing", p)
		}
	}
	l.Done()

	// Unchanged: the SDK reads the stub, the provider gets the kept result.
	l = pages.Begin()
	read, result, cached := get(t, client, l, srv.URL, "/p1")
	if !cached || read != "stub" || result != "decoded:one" {
		t.Fatalf("unchanged page: read %q, result %q, cached %v", read, result, cached)
	}
	// Changed: decoded as it came.
	s.set("/p2", "TWO")
	read, result, cached = get(t, client, l, srv.URL, "/p2")
	if cached || read != "TWO" || result != "decoded:TWO" {
		t.Fatalf("changed page: read %q, result %q, cached %v", read, result, cached)
	}
	// The listing was not completed: the next compares with the first.
	l = pages.Begin()
	if _, result, cached = get(t, client, l, srv.URL, "/p2"); cached {
		t.Fatalf("a page of an incomplete listing was remembered: %q", result)
	}
	// A page is compared with the same request only.
	s.set("/p3", "one")
	if _, _, cached = get(t, client, l, srv.URL, "/p3"); cached {
		t.Fatal("another page with the same body was taken as unchanged")
	}
}

func TestSkipUnchangedPassesErrorsAndOthers(t *testing.T) {
	s := &pageServer{bodies: map[string]string{"/p1": strings.Repeat("x", 100)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := &http.Client{Transport: SkipUnchanged(LimitBodies(nil, 10))}
	l := NewPages[string]().Begin()

	// A body over the cap fails the SDK's read as it would have, after
	// the bytes that came.
	ctx, fetch := l.Request(context.Background(), "/p1")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/p1", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tl *TooLargeError
	if !errors.As(err, &tl) || len(b) != 10 {
		t.Fatalf("read %d bytes, %v; want 10 and a TooLargeError", len(b), err)
	}
	fetch.Keep("x", []byte("stub"))
	if _, ok := fetch.Unchanged(); ok {
		t.Fatal("a failed read was taken as unchanged")
	}

	// An error answer is left to the SDK, untouched, and not kept.
	s.status = 500
	ctx, fetch = l.Request(context.Background(), "/p1")
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/p1", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || string(b) != "down" {
		t.Fatalf("error answer %d %q", resp.StatusCode, b)
	}
	fetch.Keep("down", []byte("stub"))
	l.Done()
	if len(l.next) != 0 {
		t.Fatalf("an error answer was kept: %v", l.next)
	}
}

func TestShapeLeavesVolatileOut(t *testing.T) {
	// A body "<id>N</id>data": the id differs on every answer.
	span := func(body []byte) [][2]int {
		i, j := strings.Index(string(body), "<id>"), strings.Index(string(body), "</id>")
		if i < 0 || j < i {
			return nil
		}
		return [][2]int{{i + 4, j}}
	}
	pages := NewShapedPages[string](Shape{Volatile: span, Stub: func(body []byte) []byte {
		s := span(body)[0]
		return []byte("stub:" + string(body[s[0]:s[1]]))
	}})
	l := pages.Begin()
	f := &Fetch[string]{l: l, key: "1"}
	if stub := f.probe([]byte("<id>1</id>data")); stub != nil {
		t.Fatal("a first page had a stub")
	}
	f.Keep("data", nil)
	l.Done()

	l = pages.Begin()
	f = &Fetch[string]{l: l, key: "1"}
	if stub := f.probe([]byte("<id>22</id>data")); string(stub) != "stub:22" {
		t.Fatalf("the same data under another id: stub %q, want stub:22", stub)
	}
	f = &Fetch[string]{l: l, key: "1"}
	if stub := f.probe([]byte("<id>3</id>date")); stub != nil {
		t.Fatalf("changed data gave stub %q", stub)
	}
}
