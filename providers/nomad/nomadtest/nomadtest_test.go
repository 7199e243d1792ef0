package nomadtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

func reg(id, ns, name, addr string, port int, tags ...string) api.ServiceRegistration {
	return api.ServiceRegistration{
		ID: id, ServiceName: name, Namespace: ns, NodeID: "node-" + id, Datacenter: "dc1",
		JobID: "job", AllocID: "alloc-" + id, Tags: tags, Address: addr, Port: port,
	}
}

func client(t *testing.T, s *Server, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: s.URL, SecretID: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAgainstTheClient reads the fake through nomad/api's own client, as
// peerbridge does: the registrations of one namespace, the index and
// leader headers, the empty list for "*", and the catalog.
func TestAgainstTheClient(t *testing.T) {
	s := New(t)
	s.Register(reg("a", "default", "web", "10.0.0.1", 8080, "v1"), reg("b", "default", "web", "10.0.0.2", 8081))
	s.Register(reg("c", "prod", "web", "10.0.1.1", 9090, "v1"), reg("d", "default", "db", "10.0.0.9", 5432))
	c := client(t, s, "")

	regs, meta, err := c.Services().Get("web", &api.QueryOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 2 || regs[0].ID != "a" || regs[1].Port != 8081 || regs[0].Tags[0] != "v1" {
		t.Errorf("web in default: %+v", regs)
	}
	if meta.LastIndex != s.Index() || meta.LastIndex < 2 || !meta.KnownLeader {
		t.Errorf("meta %+v, want index %d and a known leader", meta, s.Index())
	}
	if regs[0].CreateIndex == 0 || regs[0].ModifyIndex == 0 {
		t.Errorf("registration without indexes: %+v", regs[0])
	}
	if regs, _, err = c.Services().Get("web", &api.QueryOptions{Namespace: "prod"}); err != nil || len(regs) != 1 || regs[0].Namespace != "prod" {
		t.Errorf("web in prod: %+v %v", regs, err)
	}
	// As real Nomad: the registration endpoint does not fan out over "*".
	if regs, _, err = c.Services().Get("web", &api.QueryOptions{Namespace: "*"}); err != nil || len(regs) != 0 {
		t.Errorf("web in *: %+v %v, want an empty list", regs, err)
	}
	stubs, _, err := c.Services().List(&api.QueryOptions{Namespace: "*"})
	if err != nil {
		t.Fatal(err)
	}
	if len(stubs) != 2 || stubs[0].Namespace != "default" || len(stubs[0].Services) != 2 || stubs[1].Namespace != "prod" {
		t.Fatalf("catalog: %+v", stubs)
	}
	if web := stubs[0].Services[1]; web.ServiceName != "web" || len(web.Tags) != 1 || web.Tags[0] != "v1" {
		t.Errorf("web's stub in default %+v, want the union of its tags", web)
	}
	if _, _, err := c.Services().Get("web", &api.QueryOptions{Region: "elsewhere"}); err == nil || !strings.Contains(err.Error(), "No path to region") {
		t.Errorf("another region: %v", err)
	}
}

// TestBlockingQuery holds a query at the current index until a
// registration moves it, and answers one whose wait ends unchanged.
func TestBlockingQuery(t *testing.T) {
	s := New(t)
	s.Register(reg("a", "default", "web", "10.0.0.1", 8080))
	c := client(t, s, "")
	_, meta, err := c.Services().Get("web", nil)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		regs []*api.ServiceRegistration
		meta *api.QueryMeta
		err  error
	}
	done := make(chan result, 1)
	go func() {
		regs, m, err := c.Services().Get("web", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- result{regs, m, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !s.WaitHeld(ctx, 1) {
		t.Fatal("the query was not held")
	}
	select {
	case r := <-done:
		t.Fatalf("answered before a change: %+v", r)
	default:
	}
	s.Register(reg("b", "default", "web", "10.0.0.2", 8080))
	select {
	case r := <-done:
		if r.err != nil || len(r.regs) != 2 || r.meta.LastIndex <= meta.LastIndex {
			t.Errorf("after a registration: %+v %+v %v", r.regs, r.meta, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a registration did not answer the held query")
	}

	// The wait ends: the same index, the same list.
	start := time.Now()
	regs, m, err := c.Services().Get("web", &api.QueryOptions{WaitIndex: s.Index(), WaitTime: 200 * time.Millisecond})
	if took := time.Since(start); err != nil || len(regs) != 2 || m.LastIndex != s.Index() || took < 200*time.Millisecond {
		t.Errorf("a wait that ended: %d registrations, %+v, %v after %s", len(regs), m, err, took)
	}
}

// TestACL answers 403 "Permission denied" for a token without read-job in
// the namespace, "ACL token not found" for an unknown one, and filters
// "*" to what the token may read.
func TestACL(t *testing.T) {
	s := New(t)
	s.Register(reg("a", "default", "web", "10.0.0.1", 8080), reg("c", "prod", "web", "10.0.1.1", 9090))
	s.ACL(map[string][]string{"reader": {"default"}, "all": {"*"}})

	_, _, err := client(t, s, "reader").Services().Get("web", &api.QueryOptions{Namespace: "prod"})
	var resp api.UnexpectedResponseError
	if !errors.As(err, &resp) || resp.StatusCode() != 403 || resp.Body() != api.PermissionDeniedErrorContent {
		t.Errorf("reader in prod: %v", err)
	}
	if _, _, err := client(t, s, "").Services().Get("web", nil); !errors.As(err, &resp) || resp.StatusCode() != 403 {
		t.Errorf("anonymous: %v", err)
	}
	if _, _, err := client(t, s, "forged").Services().Get("web", nil); err == nil || !strings.Contains(err.Error(), "ACL token not found") {
		t.Errorf("unknown token: %v", err)
	}
	if regs, _, err := client(t, s, "reader").Services().Get("web", nil); err != nil || len(regs) != 1 {
		t.Errorf("reader in default: %v %v", regs, err)
	}
	stubs, _, err := client(t, s, "reader").Services().List(&api.QueryOptions{Namespace: "*"})
	if err != nil || len(stubs) != 1 || stubs[0].Namespace != "default" {
		t.Errorf("reader's catalog of *: %+v %v", stubs, err)
	}
	if stubs, _, err := client(t, s, "all").Services().List(&api.QueryOptions{Namespace: "*"}); err != nil || len(stubs) != 2 {
		t.Errorf("all's catalog of *: %+v %v", stubs, err)
	}
}
