package consulpub

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// entries turns registrations into what a health/service read returns.
// entries is what the catalog holds after the registrations, with what
// Consul fills in itself, which must not count as drift.
func entries(regs map[string]*api.CatalogRegistration) []*api.ServiceEntry {
	out := asEntries(regs)
	for _, e := range out {
		e.Service.Weights = api.AgentWeights{Passing: 1, Warning: 1}
		e.Service.CreateIndex, e.Service.ModifyIndex = 10, 10
		e.Node.Datacenter = "dc1"
	}
	return out
}

func names(regs []*api.CatalogRegistration) []string {
	var out []string
	for _, r := range regs {
		out = append(out, r.Node)
	}
	return out
}

func TestPlan(t *testing.T) {
	base := set("web", peer("a", "10.0.0.1"), peer("b", "10.0.0.2"), peer("c", "10.0.0.3"))
	have := entries(Desired("pb", []string{"t"}, base))

	moved := set("web", peer("a", "10.0.0.1"), peer("b", "10.0.0.9"), peer("d", "10.0.0.4"))
	foreign := &api.ServiceEntry{
		Node:    &api.Node{Node: "pb-web-x", Address: "192.0.2.1", Meta: map[string]string{metaOwner: "someone-else"}},
		Service: &api.AgentService{ID: "web", Service: "web"},
	}
	unowned := &api.ServiceEntry{Node: &api.Node{Node: "manual"}, Service: &api.AgentService{ID: "web", Service: "web"}}
	sick := base
	sick.Peers = slices.Clone(base.Peers)
	sick.Peers[0].Health = bridge.HealthCritical

	for _, tc := range []struct {
		name                   string
		want                   bridge.Set
		tags                   []string
		have                   []*api.ServiceEntry
		create, update, delete []string
	}{
		{name: "nothing changed", want: base, tags: []string{"t"}, have: have},
		{name: "from empty", want: base, tags: []string{"t"},
			create: []string{"pb-web-a", "pb-web-b", "pb-web-c"}},
		{name: "moved, added, removed", want: moved, tags: []string{"t"}, have: have,
			create: []string{"pb-web-d"}, update: []string{"pb-web-b"}, delete: []string{"pb-web-c"}},
		{name: "tags changed", want: base, tags: []string{"t", "u"}, have: have,
			update: []string{"pb-web-a", "pb-web-b", "pb-web-c"}},
		{name: "health verdict added", want: sick, tags: []string{"t"}, have: have,
			update: []string{"pb-web-a"}},
		{name: "other owners and unmarked entries are left alone", want: set("web"), have: []*api.ServiceEntry{foreign, unowned}},
		{name: "empty set deletes only own entries", want: set("web"), have: append(slices.Clone(have), foreign),
			delete: []string{"pb-web-a", "pb-web-b", "pb-web-c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plan("pb", Desired("pb", tc.tags, tc.want), tc.have)
			if !slices.Equal(names(c.Create), tc.create) || !slices.Equal(names(c.Update), tc.update) || !slices.Equal(c.Delete, tc.delete) {
				t.Errorf("create %v update %v delete %v; want %v %v %v",
					names(c.Create), names(c.Update), c.Delete, tc.create, tc.update, tc.delete)
			}
		})
	}
}

func TestDesiredSkipsBadMeta(t *testing.T) {
	p := peer("a", "10.0.0.1")
	long := make([]byte, 600)
	for i := range long {
		long[i] = 'x'
	}
	p.Attrs = map[string]string{"ok": "1", "with space": "2", "consul-x": "3", "long": string(long)}
	reg := Desired("pb", nil, set("web", p))["pb-web-a"]
	if _, ok := reg.Service.Meta["with space"]; ok {
		t.Error("a key Consul rejects was kept")
	}
	if _, ok := reg.Service.Meta["consul-x"]; ok {
		t.Error("a reserved key was kept")
	}
	if len(reg.Service.Meta["long"]) != maxMetaValue || reg.Service.Meta["ok"] != "1" {
		t.Errorf("meta = %v", reg.Service.Meta)
	}
}

// BenchmarkPlan is the pure diff of 10,000 peers with 1% churn.
func BenchmarkPlan(b *testing.B) {
	old, next := churnSets(10_000, 100)
	have := entries(Desired("pb", nil, old))
	b.ReportAllocs()
	for b.Loop() {
		if c := plan("pb", Desired("pb", nil, next), have); c.Writes() != 100 {
			b.Fatalf("%d writes, want 100", c.Writes())
		}
	}
}

// BenchmarkSync diffs and applies 10,000 peers with 1% churn against a
// real agent; writes/op must equal the churn, 100.
func BenchmarkSync(b *testing.B) {
	agent := bridgetest.StartConsul(b, "")
	counter := &writeCounter{}
	p := newPublisher(b, client(b, agent.Addr, "", counter), "pb")
	sets := [2]bridge.Set{}
	sets[0], sets[1] = churnSets(10_000, 100)
	publish(b, p, sets[0])
	writes := counter.writes.Load()
	b.ResetTimer()
	for i := range b.N {
		publish(b, p, sets[(i+1)%2])
	}
	b.StopTimer()
	perOp := float64(counter.writes.Load()-writes) / float64(b.N)
	b.ReportMetric(perOp, "writes/op")
	if perOp != 100 {
		b.Fatalf("%v writes per sync, want 100", perOp)
	}
}

// churnSets returns two sets of n peers that differ in the address of
// churn of them.
func churnSets(n, churn int) (bridge.Set, bridge.Set) {
	a, b := make([]bridge.Peer, n), make([]bridge.Peer, n)
	for i := range a {
		a[i] = bridge.Peer{Name: fmt.Sprintf("node-%05d", i), ID: fmt.Sprint(i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}}
		b[i] = a[i]
		if i < churn {
			b[i].Addrs = []netip.Addr{netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})}
		}
	}
	svc := bridge.Service{Topology: "bench", Name: "bench", Provider: "static", Port: 4369}
	return bridge.Set{Service: svc, Peers: a}.Normalize(), bridge.Set{Service: svc, Peers: b}.Normalize()
}

// TestSetFromEntriesRoundTrip: what a follower rebuilds from the catalog
// is the set the leader published.
func TestSetFromEntriesRoundTrip(t *testing.T) {
	both := peer("both", "10.0.0.1", "fd00::1")
	both.Attrs = map[string]string{"region": "nyc3"}
	sick := peer("sick", "10.0.0.2")
	sick.Health = bridge.HealthCritical
	well := peer("well", "10.0.0.3", "10.0.0.4")
	well.Health = bridge.HealthPassing
	want := set("web", both, sick, well)
	foreign := &api.ServiceEntry{
		Node:    &api.Node{Node: "x", Address: "192.0.2.1", Meta: map[string]string{metaOwner: "other"}},
		Service: &api.AgentService{ID: "web", Service: "web"},
	}
	got := setFromEntries("pb", want.Service, append(entries(Desired("pb", []string{"t"}, want)), foreign))
	if !got.Equal(want) {
		t.Fatalf("rebuilt %+v\nwant    %+v", got, want)
	}
}

// TestPeerPorts: a peer's own port is its service's port in the catalog
// unless the topology's port is configured; a follower reads it back, and
// a port that moves is an update.
func TestPeerPorts(t *testing.T) {
	a, b, c := peer("a", "10.0.0.1"), peer("b", "10.0.0.1"), peer("c", "10.0.0.3")
	a.Port, b.Port = 32768, 32769
	own := set("tasks", a, b, c)
	own.Service.Port = 0
	regs := Desired("pb", nil, own)
	for node, want := range map[string]int{"pb-tasks-a": 32768, "pb-tasks-b": 32769, "pb-tasks-c": 0} {
		if got := regs[node].Service.Port; got != want {
			t.Errorf("%s: port %d, want %d", node, got, want)
		}
	}
	if got := setFromEntries("pb", own.Service, entries(regs)); !got.Equal(own) {
		t.Errorf("rebuilt %+v\nwant    %+v", got, own)
	}

	configured := set("tasks", a, b, c) // Port 4369: it wins
	for node, reg := range Desired("pb", nil, configured) {
		if reg.Service.Port != 4369 {
			t.Errorf("%s: port %d, want the configured 4369", node, reg.Service.Port)
		}
	}

	moved := own
	moved.Peers = slices.Clone(own.Peers)
	moved.Peers[1].Port = 40000
	c2 := plan("pb", Desired("pb", nil, moved), entries(regs))
	if !slices.Equal(names(c2.Update), []string{"pb-tasks-b"}) || len(c2.Create)+len(c2.Delete) != 0 {
		t.Errorf("a moved port: create %v update %v delete %v; want b updated", names(c2.Create), names(c2.Update), c2.Delete)
	}
}
