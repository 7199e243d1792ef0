package consulpub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// writeCounter counts the write requests (anything but GET) a client sends.
type writeCounter struct{ writes atomic.Int64 }

func (c *writeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet {
		c.writes.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func client(t testing.TB, addr, token string, rt http.RoundTripper) *api.Client {
	t.Helper()
	if rt == nil {
		rt = http.DefaultTransport
	}
	c, err := api.NewClient(&api.Config{Address: addr, Token: token, HttpClient: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPublisher(t testing.TB, c *api.Client, owner string, tags ...string) *Publisher {
	t.Helper()
	p, err := New(Options{Client: c, Owner: owner, Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func set(service string, peers ...bridge.Peer) bridge.Set {
	return bridge.Set{
		Service: bridge.Service{Topology: service, Name: service, Provider: "static", Port: 4369},
		Peers:   peers,
	}.Normalize()
}

func peer(name string, addrs ...string) bridge.Peer {
	p := bridge.Peer{Name: name, ID: "id-" + name}
	for _, a := range addrs {
		p.Addrs = append(p.Addrs, netip.MustParseAddr(a))
	}
	return p
}

// publish publishes and syncs at once.
func publish(t testing.TB, p *Publisher, s bridge.Set) {
	t.Helper()
	if err := p.Publish(context.Background(), s); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := p.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// nodes returns service's catalog entries by node name.
func nodes(t testing.TB, c *api.Client, service string) map[string]*api.CatalogService {
	t.Helper()
	entries, _, err := c.Catalog().Service(service, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*api.CatalogService{}
	for _, e := range entries {
		out[e.Node] = e
	}
	return out
}

// TestWithConsul runs against one real dev agent.
func TestWithConsul(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	counter := &writeCounter{}
	c := client(t, agent.Addr, "", counter)
	ctx := context.Background()

	t.Run("registration shape", func(t *testing.T) {
		p := newPublisher(t, c, "pb", "erlang", "beam")
		web := peer("web-1", "10.0.0.1", "fd00::1")
		web.Attrs = map[string]string{"region": "nyc3", "droplet_id": "42", "consul-reserved": "x", "bad key": "y"}
		publish(t, p, set("shape", web, peer("web-2", "10.0.0.2")))

		got := nodes(t, c, "shape")
		e := got["pb-shape-web-1"]
		if len(got) != 2 || e == nil {
			t.Fatalf("catalog holds %v", slices.Collect(maps.Keys(got)))
		}
		wantNodeMeta := map[string]string{metaOwner: "pb", metaExternal: "true"}
		wantMeta := map[string]string{metaProvider: "static", metaPeerID: "id-web-1", metaPeerName: "web-1",
			metaPeerAddrs: "10.0.0.1,fd00::1", "region": "nyc3", "droplet_id": "42"}
		if e.Address != "10.0.0.1" || e.ServiceAddress != "10.0.0.1" || e.ServicePort != 4369 || e.ServiceID != "shape" ||
			!maps.Equal(e.NodeMeta, wantNodeMeta) || !maps.Equal(e.ServiceMeta, wantMeta) ||
			!slices.Equal(e.ServiceTags, []string{"beam", "erlang"}) ||
			e.TaggedAddresses["lan_ipv6"] != "fd00::1" {
			t.Errorf("entry = %+v", e)
		}
		checks, _, err := c.Health().Checks("shape", nil)
		if err != nil || len(checks) != 0 {
			t.Errorf("checks %v, %v; want none without a health check", checks, err)
		}
	})

	t.Run("health verdict as a check", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		up, down := peer("up", "10.0.1.1"), peer("down", "10.0.1.2")
		up.Health, down.Health = bridge.HealthPassing, bridge.HealthCritical
		publish(t, p, set("checked", up, down))
		statuses := func() map[string]string {
			checks, _, err := c.Health().Checks("checked", nil)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, ch := range checks {
				out[ch.Node] = ch.Status
			}
			return out
		}
		if got := statuses(); !maps.Equal(got, map[string]string{"pb-checked-up": "passing", "pb-checked-down": "critical"}) {
			t.Errorf("checks %v", got)
		}
		if n := nodes(t, c, "checked")["pb-checked-up"]; n.NodeMeta[metaProbe] != "true" {
			t.Errorf("node meta %v lacks %s", n.NodeMeta, metaProbe)
		}
		// The check goes when the health check is switched off.
		up.Health, down.Health = bridge.HealthUnknown, bridge.HealthUnknown
		publish(t, p, set("checked", up, down))
		if got := statuses(); len(got) != 0 {
			t.Errorf("checks %v left after health checks were switched off", got)
		}
	})

	t.Run("steady polls write nothing; drift is repaired", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := set("steady", peer("a", "10.0.2.1"), peer("b", "10.0.2.2"), peer("c", "10.0.2.3"))
		publish(t, p, s)
		before := counter.writes.Load()
		for range 5 {
			publish(t, p, s)
		}
		if n := counter.writes.Load() - before; n != 0 {
			t.Fatalf("%d writes over 5 polls that changed nothing, want 0", n)
		}

		// By hand: one node deleted, one service's port changed.
		if _, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "pb-steady-a"}, nil); err != nil {
			t.Fatal(err)
		}
		edited := Desired("pb", nil, s)["pb-steady-b"]
		edited.Service.Port = 1
		if _, err := c.Catalog().Register(edited, nil); err != nil {
			t.Fatal(err)
		}
		before = counter.writes.Load()
		publish(t, p, s)
		if n := counter.writes.Load() - before; n != 1 {
			t.Errorf("%d writes to repair two entries, want 1 transaction", n)
		}
		got := nodes(t, c, "steady")
		if len(got) != 3 || got["pb-steady-b"].ServicePort != 4369 {
			t.Errorf("after repair: %d nodes, b's port %d", len(got), got["pb-steady-b"].ServicePort)
		}
	})

	t.Run("a removed peer is deregistered", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		publish(t, p, set("removal", peer("a", "10.0.3.1"), peer("b", "10.0.3.2"), peer("c", "10.0.3.3")))
		before := counter.writes.Load()
		publish(t, p, set("removal", peer("a", "10.0.3.1"), peer("c", "10.0.3.3")))
		got := nodes(t, c, "removal")
		if _, ok := got["pb-removal-b"]; ok || len(got) != 2 {
			t.Errorf("catalog %v, want b gone", slices.Collect(maps.Keys(got)))
		}
		if node, _, _ := c.Catalog().Node("pb-removal-b", nil); node != nil {
			t.Error("the node of a removed peer is still there")
		}
		if n := counter.writes.Load() - before; n != 1 {
			t.Errorf("%d writes, want 1", n)
		}
	})

	t.Run("foreign entries are untouched", func(t *testing.T) {
		// A hand-registered node in the same service, and one that has
		// exactly the name peerbridge would give a peer.
		for _, reg := range []*api.CatalogRegistration{
			{Node: "by-hand", Address: "192.0.2.1", Service: &api.AgentService{ID: "foreign", Service: "foreign", Port: 1}},
			{Node: "pb-foreign-b", Address: "192.0.2.2", NodeMeta: map[string]string{"team": "ops"},
				Service: &api.AgentService{ID: "other", Service: "other", Port: 2}},
		} {
			if _, err := c.Catalog().Register(reg, nil); err != nil {
				t.Fatal(err)
			}
		}
		p := newPublisher(t, c, "pb")
		p.Publish(ctx, set("foreign", peer("a", "10.0.4.1"), peer("b", "10.0.4.2")))
		err := p.Sync(ctx)
		if err == nil || !strings.Contains(err.Error(), "node pb-foreign-b not written") {
			t.Errorf("Sync = %v, want a refusal to take over pb-foreign-b", err)
		}
		// Publish reports that last failure; the next sync, with nothing
		// wanted any more, succeeds.
		if err := p.Publish(ctx, set("foreign")); err == nil {
			t.Error("Publish does not report the last sync's failure")
		}
		if err := p.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := nodes(t, c, "foreign"); len(got) != 1 || got["by-hand"] == nil {
			t.Errorf("catalog %v, want the hand-registered node alone", slices.Collect(maps.Keys(got)))
		}
		if other := nodes(t, c, "other")["pb-foreign-b"]; other == nil || other.Address != "192.0.2.2" {
			t.Errorf("the foreign node was changed: %+v", other)
		}
	})

	t.Run("two owners are kept apart", func(t *testing.T) {
		a, b := newPublisher(t, c, "alpha"), newPublisher(t, c, "beta")
		publish(t, a, set("shared", peer("x", "10.0.5.1")))
		publish(t, b, set("shared", peer("x", "10.0.5.2"), peer("y", "10.0.5.3")))
		publish(t, a, set("shared")) // alpha's cluster empties
		got := nodes(t, c, "shared")
		if len(got) != 2 || got["beta-shared-x"] == nil || got["beta-shared-y"] == nil {
			t.Errorf("catalog %v, want beta's two nodes", slices.Collect(maps.Keys(got)))
		}
	})

	t.Run("a restart adopts its entries", func(t *testing.T) {
		s := set("adopt", peer("a", "10.0.6.1"), peer("b", "10.0.6.2"))
		publish(t, newPublisher(t, c, "pb"), s)
		before := nodes(t, c, "adopt")
		writes := counter.writes.Load()
		publish(t, newPublisher(t, c, "pb"), s) // a new process, same owner
		if n := counter.writes.Load() - writes; n != 0 {
			t.Errorf("%d writes after a restart, want 0", n)
		}
		for name, e := range nodes(t, c, "adopt") {
			if e.CreateIndex != before[name].CreateIndex || e.ModifyIndex != before[name].ModifyIndex {
				t.Errorf("%s: indexes %d/%d, were %d/%d", name, e.CreateIndex, e.ModifyIndex, before[name].CreateIndex, before[name].ModifyIndex)
			}
		}
	})

	t.Run("several topologies", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		p.Publish(ctx, set("topo-a", peer("a", "10.0.7.1")))
		p.Publish(ctx, set("topo-b", peer("a", "10.0.7.2"), peer("b", "10.0.7.3")))
		if err := p.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if a, b := len(nodes(t, c, "topo-a")), len(nodes(t, c, "topo-b")); a != 1 || b != 2 {
			t.Errorf("topo-a %d nodes, topo-b %d; want 1 and 2", a, b)
		}
	})
}

// TestConsulRestart stops Consul and starts it again empty: the publisher
// retries with backoff and refills the catalog.
func TestConsulRestart(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	c := client(t, agent.Addr, "", nil)
	p := newPublisher(t, c, "pb")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	s := set("restart", peer("a", "10.0.8.1"), peer("b", "10.0.8.2"))
	p.Publish(ctx, s)
	waitNodes(t, c, "restart", 2)

	agent.Stop()
	p.Publish(ctx, s) // a poll while Consul is down
	deadline := time.Now().Add(10 * time.Second)
	for p.Publish(ctx, s) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Publish reports no error while Consul is down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	agent.Restart()
	// No new poll: the retry alone must bring the entries back.
	waitNodes(t, c, "restart", 2)
}

func waitNodes(t *testing.T, c *api.Client, service string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _, err := c.Catalog().Service(service, "", nil)
		if err == nil && len(entries) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d nodes (%v) after 20s, want %d", service, len(entries), err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestACLToken runs against an agent that denies by default: the token is
// what lets the publisher write.
func TestACLToken(t *testing.T) {
	const root = "2b3c8a3e-5a1f-4c2e-9d4b-0123456789ab"
	agent := bridgetest.StartConsul(t, fmt.Sprintf(
		`acl { enabled = true, default_policy = "deny", tokens { initial_management = %q, agent = %q } }`, root, root))
	s := set("acl", peer("a", "10.0.9.1"))

	anonymous := newPublisher(t, client(t, agent.Addr, "", nil), "pb")
	anonymous.Publish(context.Background(), s)
	if err := anonymous.Sync(context.Background()); err == nil {
		t.Fatal("an anonymous client could write with default_policy deny")
	}

	t.Setenv("CONSUL_HTTP_ADDR", agent.Addr)
	t.Setenv("CONSUL_HTTP_TOKEN", root)
	c, err := api.NewClient(api.DefaultConfig()) // as peerbridge builds it
	if err != nil {
		t.Fatal(err)
	}
	publish(t, newPublisher(t, c, "pb"), s)
	if got := nodes(t, c, "acl"); len(got) != 1 {
		t.Fatalf("%d nodes with the token, want 1", len(got))
	}
}

// zone records what Follow publishes.
type zone chan published

type published struct {
	serial uint32
	sets   []bridge.Set
}

func (z zone) PublishSerial(_ context.Context, serial uint32, sets ...bridge.Set) error {
	z <- published{serial, sets}
	return nil
}

func (z zone) next(t *testing.T) published {
	t.Helper()
	select {
	case p := <-z:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published by the watch")
		return published{}
	}
}

// lock takes key with a new session, as a leader does.
func lock(t *testing.T, c *api.Client, key string) Fence {
	t.Helper()
	id, _, err := c.Session().Create(&api.SessionEntry{Behavior: api.SessionBehaviorRelease}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.KV().Acquire(&api.KVPair{Key: key, Session: id}, nil); err != nil || !ok {
		t.Fatalf("acquire %s: %v %v", key, ok, err)
	}
	return Fence{Key: key, Session: id}
}

// TestFollow watches the catalog and the stamp as every HA replica does,
// through blocking queries (which Consul serves from its streaming
// backend): two followers serve the leader's sets under the same serial,
// which grows with each change; a deposed leader's writes are refused.
func TestFollow(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	c := client(t, agent.Addr, "", nil)
	fence := lock(t, c, "peerbridge/leader/pb")
	leader, err := New(Options{Client: c, Owner: "pb", Fence: fence})
	if err != nil {
		t.Fatal(err)
	}
	s := set("followed", peer("a", "10.1.0.1"), peer("b", "10.1.0.2", "fd00::2"))
	publish(t, leader, s)
	// Another owner's entry in the same service is no part of the set.
	publish(t, newPublisher(t, c, "other"), set("followed", peer("z", "10.9.9.9")))

	ctx, cancel := context.WithCancel(context.Background())
	var zones []zone
	var done []chan struct{}
	for range 2 {
		z, ready, d := make(zone, 10), make(chan string, 1), make(chan struct{})
		go func() {
			defer close(d)
			Follow(ctx, FollowOptions{Client: c, Owner: "pb", StampKey: StampKey(fence.Key), Services: []bridge.Service{s.Service},
				Zone: z, Ready: func(topology string) { ready <- topology }})
		}()
		zones, done = append(zones, z), append(done, d)
		if first := z.next(t); len(first.sets) != 1 || !first.sets[0].Equal(s) {
			t.Fatalf("first sets %+v, want %+v", first.sets, s)
		}
		if topo := <-ready; topo != "followed" {
			t.Fatalf("ready(%q)", topo)
		}
	}

	changed := set("followed", peer("a", "10.1.0.1"))
	publish(t, leader, changed)
	var serials []uint32
	for _, z := range zones {
		p := z.next(t)
		for !p.sets[0].Equal(changed) {
			p = z.next(t)
		}
		serials = append(serials, p.serial)
	}
	if serials[0] != serials[1] || serials[0] == 0 {
		t.Errorf("serials %v for the same records, want equal", serials)
	}

	// Deposed: the session ends, its writes are refused.
	if _, err := c.Session().Destroy(fence.Session, nil); err != nil {
		t.Fatal(err)
	}
	leader.Publish(ctx, set("followed", peer("a", "10.1.0.1"), peer("c", "10.1.0.3")))
	if err := leader.Sync(ctx); !errors.Is(err, errFenced) {
		t.Errorf("Sync after losing the lock = %v, want errFenced", err)
	}
	if got := nodes(t, c, "followed"); len(got) != 2 || got["pb-followed-c"] != nil {
		t.Errorf("catalog %v after a deposed leader's write", slices.Collect(maps.Keys(got)))
	}

	cancel()
	for _, d := range done {
		select {
		case <-d:
		case <-time.After(10 * time.Second):
			t.Fatal("Follow did not return after cancel")
		}
	}
}
