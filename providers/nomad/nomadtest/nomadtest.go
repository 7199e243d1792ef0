// Package nomadtest is an httptest Nomad for tests: the service
// registration endpoints (/v1/service/<name> and /v1/services), answered
// with nomad/api's own types, with Nomad's blocking query semantics
// (X-Nomad-Index; a request with index waits until the index passes it or
// its wait, plus up to wait/16 of jitter, ends), namespaces and "*", ACL
// tokens with 403 "Permission denied", and faults.
//
// Nomad's agent is not open source from 1.7 on, so no real one runs in
// the tests; this fake follows the agent's HTTP behaviour as the api
// client reads it, and its own tests check it against that client.
package nomadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Nomad's limits on a blocking query's wait: 5 minutes when none is
// given, 10 at most.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// Fault, when set, sees every request first. It returns false to let the
// fake answer as Nomad would, or true when it wrote an answer itself.
type Fault func(w http.ResponseWriter, r *http.Request) bool

// Server is a fake Nomad agent.
type Server struct {
	*httptest.Server
	// Region is the agent's region; a request for another is a 500, as
	// an agent with no path to it answers.
	Region string

	mu      sync.Mutex
	index   uint64
	regs    []api.ServiceRegistration
	changed chan struct{} // closed and replaced on every change
	acl     map[string][]string
	fault   Fault
	held    int
	reqs    int
	tokens  []string
}

// New starts a fake Nomad over plain HTTP on loopback, with ACLs off,
// and stops it when the test ends.
func New(t testing.TB) *Server {
	s := newServer()
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// NewTLS starts a fake Nomad over HTTPS. configure, if set, adjusts the
// server's TLS before it starts (to require client certificates).
func NewTLS(t testing.TB, configure func(*httptest.Server)) *Server {
	s := newServer()
	s.Server = httptest.NewUnstartedServer(s)
	if configure != nil {
		configure(s.Server)
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// NewUnix starts a fake Nomad on a unix socket at path, as a task's Task
// API socket (${NOMAD_SECRETS_DIR}/api.sock); its URL is meaningless.
func NewUnix(t testing.TB, path string) *Server {
	s := newServer()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s.Server = httptest.NewUnstartedServer(s)
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newServer() *Server {
	return &Server{Region: "global", index: 1, changed: make(chan struct{})}
}

// Close stops the server, answering the blocking queries it holds first:
// httptest waits for open requests.
func (s *Server) Close() {
	s.mu.Lock()
	s.fault = nil
	s.mu.Unlock()
	s.Server.CloseClientConnections()
	s.Server.Close()
}

// Register adds registrations, or replaces those with the same ID, in one
// Raft index, as a placed allocation registers its services.
func (s *Server) Register(regs ...api.ServiceRegistration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	for _, r := range regs {
		r.CreateIndex, r.ModifyIndex = s.index, s.index
		if i := slices.IndexFunc(s.regs, func(o api.ServiceRegistration) bool { return o.ID == r.ID }); i >= 0 {
			r.CreateIndex = s.regs[i].CreateIndex
			s.regs[i] = r
		} else {
			s.regs = append(s.regs, r)
		}
	}
	s.bump()
}

// Deregister removes the registrations with these IDs in one index.
func (s *Server) Deregister(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.regs = slices.DeleteFunc(s.regs, func(r api.ServiceRegistration) bool { return slices.Contains(ids, r.ID) })
	s.bump()
}

// bump wakes every held query; s.mu is held.
func (s *Server) bump() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ACL turns ACLs on: tokens maps a secret ID to the namespaces in which
// it has read-job ("*" for all). A request without a token is anonymous,
// with no rights. nil turns ACLs off.
func (s *Server) ACL(tokens map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acl = tokens
}

// SetFault installs f (nil removes it).
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Index is the registrations table's current index.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Held is the number of blocking queries the server holds right now.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Requests is the number of requests served so far.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs
}

// Tokens returns the X-Nomad-Token of every request so far, in order
// ("" for none), so that a test can see where a token went.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokens)
}

// Status answers with code and Nomad's plain-text error body.
func Status(code int, body string) Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, body, code)
		return true
	}
}

// Malformed answers 200 with a body that is no JSON list.
func Malformed() Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("X-Nomad-Index", "1")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"ID": "half`)
		return true
	}
}

// Hang holds every request until the client gives up: an agent that
// accepted the connection and never answers.
func Hang() Fault {
	return func(_ http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	}
}

// HangBlocking holds only blocking queries (those with index) until the
// client gives up, and lets plain reads through.
func HangBlocking() Fault {
	return func(_ http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("index") == "" {
			return false
		}
		<-r.Context().Done()
		return true
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs++
	s.tokens = append(s.tokens, r.Header.Get("X-Nomad-Token"))
	fault := s.fault
	s.mu.Unlock()
	if fault != nil && fault(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "Invalid method", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	if region := q.Get("region"); region != "" && region != s.Region {
		http.Error(w, "No path to region", http.StatusInternalServerError)
		return
	}
	if q.Has("filter") {
		// Not needed by peerbridge; saying so beats ignoring it.
		http.Error(w, "nomadtest: filter is not implemented", http.StatusBadRequest)
		return
	}
	ns := q.Get("namespace")
	if ns == "" {
		ns = "default"
	}
	switch {
	case r.URL.Path == "/v1/services":
		s.answer(w, r, ns, func() any { return s.list(r, ns) })
	case strings.HasPrefix(r.URL.Path, "/v1/service/"):
		name := strings.TrimPrefix(r.URL.Path, "/v1/service/")
		if name == "" || strings.Contains(name, "/") {
			http.Error(w, "nomadtest: only reads of /v1/service/<name>", http.StatusNotFound)
			return
		}
		s.answer(w, r, ns, func() any { return s.get(ns, name) })
	default:
		http.NotFound(w, r)
	}
}

// answer runs read under Nomad's blocking rules: the token is checked
// first, as Nomad resolves it before it blocks; with index, it waits
// until the table's index passes it or wait (plus jitter) ends, then
// answers what read returns at that moment.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, ns string, read func() any) {
	if ok, code, msg := s.allowed(r, ns); !ok {
		http.Error(w, msg, code)
		return
	}
	q := r.URL.Query()
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		var err error
		if minIndex, err = strconv.ParseUint(v, 10, 64); err != nil {
			http.Error(w, "Invalid index: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		wait = min(d, maxWait)
	}
	// Nomad adds up to wait/16 so that many waiters do not return at once.
	if wait > 0 {
		wait += rand.N(wait/16 + 1)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()

	s.mu.Lock()
	if minIndex > 0 && s.index <= minIndex {
		s.held++
		for s.index <= minIndex {
			changed := s.changed
			s.mu.Unlock()
			var done bool
			select {
			case <-changed:
			case <-deadline.C:
				done = true
			case <-r.Context().Done():
				done = true
			}
			s.mu.Lock()
			if done {
				break
			}
		}
		s.held--
	}
	index := s.index
	s.mu.Unlock()

	body, err := json.Marshal(read())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	h.Set("X-Nomad-KnownLeader", "true")
	h.Set("X-Nomad-LastContact", "0")
	w.Write(body)
}

// allowed reports whether the request's token may read jobs in ns; with
// ns "*", the namespaces it may read are filtered instead.
func (s *Server) allowed(r *http.Request, ns string) (ok bool, code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acl == nil {
		return true, 0, ""
	}
	token := r.Header.Get("X-Nomad-Token")
	if token == "" {
		return false, http.StatusForbidden, api.PermissionDeniedErrorContent // anonymous: no policy
	}
	nss, found := s.acl[token]
	if !found {
		return false, http.StatusForbidden, "ACL token not found"
	}
	if ns == "*" || slices.Contains(nss, "*") || slices.Contains(nss, ns) {
		return true, 0, ""
	}
	return false, http.StatusForbidden, api.PermissionDeniedErrorContent
}

func (s *Server) mayRead(r *http.Request, ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acl == nil {
		return true
	}
	nss := s.acl[r.Header.Get("X-Nomad-Token")]
	return slices.Contains(nss, "*") || slices.Contains(nss, ns)
}

// get is /v1/service/<name>: the registrations of name in ns. Nomad
// answers namespace "*" with an empty list here.
func (s *Server) get(ns, name string) any {
	out := []*api.ServiceRegistration{}
	if ns == "*" {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, reg := range s.regs {
		if reg.Namespace == ns && reg.ServiceName == name {
			out = append(out, &reg)
		}
	}
	return out
}

// list is /v1/services: per namespace, each service's name and the union
// of its registrations' tags; "*" covers the namespaces the token may
// read, without a 403 for the others.
func (s *Server) list(r *http.Request, ns string) any {
	s.mu.Lock()
	regs := slices.Clone(s.regs)
	s.mu.Unlock()
	byNS := map[string]map[string][]string{}
	for _, reg := range regs {
		if (ns != "*" && reg.Namespace != ns) || (ns == "*" && !s.mayRead(r, reg.Namespace)) {
			continue
		}
		if byNS[reg.Namespace] == nil {
			byNS[reg.Namespace] = map[string][]string{}
		}
		tags := append(byNS[reg.Namespace][reg.ServiceName], reg.Tags...)
		slices.Sort(tags)
		byNS[reg.Namespace][reg.ServiceName] = slices.Compact(tags)
	}
	out := []*api.ServiceRegistrationListStub{}
	for _, name := range sortedKeys(byNS) {
		stub := &api.ServiceRegistrationListStub{Namespace: name}
		for _, svc := range sortedKeys(byNS[name]) {
			stub.Services = append(stub.Services, &api.ServiceRegistrationStub{ServiceName: svc, Tags: byNS[name][svc]})
		}
		out = append(out, stub)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// WaitHeld waits until the server holds at least n blocking queries, or
// ctx ends; it reports whether it saw them.
func (s *Server) WaitHeld(ctx context.Context, n int) bool {
	for s.Held() < n {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	return true
}
