package rancher

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMetadata answers as rancher-metadata does: JSON labelled text/plain
// when asked with Accept: application/json, plain-text indexes otherwise,
// arrays in a new order on every answer, the real 404 body, and the
// version long-poll (wait and value required, maxWait in seconds, at most
// 120, answering the unchanged version when it times out).
type fakeMetadata struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	docs     map[string]any // path -> JSON document
	version  string
	changed  chan struct{} // closed when version changes
	fail     func(path string) (status int, body string)
	requests []*http.Request
	// hook, when set, answers every request instead (a redirect).
	hook http.HandlerFunc
}

func newFakeMetadata(t testing.TB) *fakeMetadata {
	f := &fakeMetadata{t: t, docs: map[string]any{}, version: "862fe1d9-d27f-443e-ab64-af15a75095a6", changed: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// load serves a fixture file at path.
func (f *fakeMetadata) load(path, file string) {
	f.t.Helper()
	f.set(path, readJSON(f.t, file))
}

func (f *fakeMetadata) set(path string, doc any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[path] = doc
}

func (f *fakeMetadata) remove(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.docs, path)
}

func (f *fakeMetadata) failWith(fail func(path string) (int, string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// doc returns the document at path for editing; call bump afterwards.
func (f *fakeMetadata) doc(path string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.docs[path]
}

// bump changes the version, as a reload of the metadata does.
func (f *fakeMetadata) bump() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version = fmt.Sprintf("%08x-0000-4000-8000-%012x", rand.Uint32(), rand.Uint64()&0xffffffffffff)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeMetadata) log() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.requests...)
}

func (f *fakeMetadata) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Clone(r.Context()))
	fail, hook := f.fail, f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8") // as the real server does
	if fail != nil {
		if status, body := fail(r.URL.Path); status != 0 {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
	}
	if strings.HasSuffix(r.URL.Path, "/version") {
		f.serveVersion(w, r)
		return
	}
	f.mu.Lock()
	doc, ok := f.docs[r.URL.Path]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, readFile(f.t, "error_404_not_found.json"))
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/json") {
		// The plain-text index the server gives without the header.
		fmt.Fprint(w, "0=myapp\n1=redis\n")
		return
	}
	out, err := json.Marshal(shuffle(doc))
	if err != nil {
		f.t.Error(err)
	}
	w.Write(out)
}

func (f *fakeMetadata) serveVersion(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	current, changed := f.version, f.changed
	f.mu.Unlock()
	if q.Get("wait") == "true" && q.Has("value") && q.Get("value") == current {
		wait := 5 * time.Second
		if s, err := strconv.Atoi(q.Get("maxWait")); err == nil {
			wait = time.Duration(min(s, 120)) * time.Second
		}
		select {
		case <-changed:
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
		current = f.version
		f.mu.Unlock()
	}
	json.NewEncoder(w).Encode(current)
}

// shuffle returns doc with every array of objects (services, containers,
// stacks, hosts) in a random order, as the real server's map iteration
// gives. Lists of plain values, such as ips, keep their order.
func shuffle(doc any) any {
	switch v := doc.(type) {
	case []any:
		out := make([]any, len(v))
		objects := true
		for i, e := range v {
			out[i] = shuffle(e)
			_, isObject := e.(map[string]any)
			objects = objects && isObject
		}
		if objects {
			rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = shuffle(e)
		}
		return out
	}
	return doc
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readJSON(t testing.TB, name string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(readFile(t, name)), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// containersOf returns the container objects of a service document (an
// object with "containers", or a list of services, by name).
func containersOf(doc any, service string) []any {
	switch v := doc.(type) {
	case map[string]any:
		return v["containers"].([]any)
	case []any:
		for _, s := range v {
			if s.(map[string]any)["name"] == service {
				return s.(map[string]any)["containers"].([]any)
			}
		}
	}
	return nil
}

// containerNamed finds a container object by name.
func containerNamed(containers []any, name string) map[string]any {
	for _, c := range containers {
		if m := c.(map[string]any); m["name"] == name {
			return m
		}
	}
	return nil
}
