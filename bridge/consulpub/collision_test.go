package consulpub

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// Issue 25, finding 3: with HA, one entry Consul refused (a node of that
// name held by someone else) kept the leader's stamp from being written,
// and followers serve only what matches the stamp: every topology was
// NXDOMAIN on every replica and /readyz stayed 503. Two topologies whose
// peers map to one node name did the same. Now the colliding peer is
// skipped in the plan (the first topology by name keeps the node), the
// refused entry is reported, and the stamp says what the catalog holds:
// followers serve every other peer.
func TestNodeNameCollisionsKeepDNSServing(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	c := client(t, agent.Addr, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Someone else's node with the name the bridge gives web's peer x.
	if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: "pb-web-x", Address: "192.0.2.1"}, nil); err != nil {
		t.Fatal(err)
	}
	named := func(topology string, peers ...bridge.Peer) bridge.Set {
		s := set(topology, peers...)
		s.Service.Topology = topology
		return s
	}
	// web's api-1 and web-api's 1 are both node pb-web-api-1.
	web := named("web", peer("api-1", "10.5.0.1"), peer("x", "10.5.0.2"), peer("y", "10.5.0.3"))
	webAPI := named("web-api", peer("1", "10.6.0.1"), peer("2", "10.6.0.2"))

	logs := &bridgetest.Buffer{}
	fence := lock(t, c, "peerbridge/leader/pb")
	leader, err := New(Options{Client: c, Owner: "pb", Fence: fence, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	leader.Publish(ctx, web)
	leader.Publish(ctx, webAPI)
	err = leader.Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), "node pb-web-x not written") {
		t.Errorf("Sync = %v, want the refused node named", err)
	}
	if st := leader.Stats(); st.Collisions != 1 || st.Failures == 0 {
		t.Errorf("Stats = %+v, want 1 collision and the failure counted", st)
	}
	for _, want := range []string{`level=ERROR msg="consul node name collision: entry skipped" node=pb-web-api-1 topology=web-api peer=1`,
		`peer \"api-1\" of topology web`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}

	z := make(zone, 10)
	go Follow(ctx, FollowOptions{Client: c, Owner: "pb", StampKey: StampKey(fence.Key),
		Services: []bridge.Service{web.Service, webAPI.Service}, Zone: z})
	got := z.next(t).sets
	wantWeb := named("web", peer("api-1", "10.5.0.1"), peer("y", "10.5.0.3"))
	wantAPI := named("web-api", peer("2", "10.6.0.2"))
	if len(got) != 2 || !sameSet(got[0], wantWeb) || !sameSet(got[1], wantAPI) {
		t.Errorf("followed %+v, want web without x and web-api without 1", got)
	}

	// A retry changes nothing: the stamp stays, its serial too.
	kvStamp := func() string {
		pair, _, err := c.KV().Get(StampKey(fence.Key), nil)
		if err != nil || pair == nil {
			t.Fatalf("stamp: %v %v", pair, err)
		}
		return string(pair.Value)
	}
	before := kvStamp()
	leader.Publish(ctx, web)
	if err := leader.Sync(ctx); err == nil {
		t.Error("Sync succeeds with the foreign node still there")
	}
	if after := kvStamp(); after != before {
		t.Errorf("stamp %s after a retry, was %s", after, before)
	}
}

// sameSet compares what followers rebuild: peers' names, ids and
// addresses.
func sameSet(a, b bridge.Set) bool {
	return a.Service.Topology == b.Service.Topology && setDigest(a) == setDigest(b)
}

func TestCollisions(t *testing.T) {
	sets := []bridge.Set{
		set("a-b-c", peer("d", "10.0.0.1")),
		set("a-b", peer("c-d", "10.0.0.2"), peer("e", "10.0.0.3")),
		set("a", peer("b-c-d", "10.0.0.4"), peer("b-e", "10.0.0.5"), peer("b-f")), // b-f has no address: no node
		set("a-b-f", peer("x", "10.0.0.6")),
	}
	// Three peers map to o-a-b-c-d: the first topology by name keeps it,
	// and both others are told. a's b-e is node o-a-b-e, as is a-b's e.
	want := []Collision{
		{Node: "o-a-b-c-d", Topology: "a", Peer: "b-c-d", Other: "a-b", OtherPeer: "c-d"},
		{Node: "o-a-b-c-d", Topology: "a", Peer: "b-c-d", Other: "a-b-c", OtherPeer: "d"},
		{Node: "o-a-b-e", Topology: "a", Peer: "b-e", Other: "a-b", OtherPeer: "e"},
	}
	if got := Collisions("o", sets); !slices.Equal(got, want) {
		t.Errorf("Collisions =\n%+v\nwant\n%+v", got, want)
	}
	if got := Collisions("o", sets[3:]); len(got) != 0 {
		t.Errorf("Collisions of one set = %+v", got)
	}
}

// A topology no leader has stamped (new, or one whose every write fails:
// a token that may not write its service) held every other topology out
// of DNS on every replica; now the others are served, and it is not
// reported ready.
func TestFollowServesWhatIsStamped(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	c := client(t, agent.Addr, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fence := lock(t, c, "peerbridge/leader/pb")
	leader, err := New(Options{Client: c, Owner: "pb", Fence: fence})
	if err != nil {
		t.Fatal(err)
	}
	served := set("served", peer("a", "10.7.0.1"))
	publish(t, leader, served)
	unwritten := set("unwritten", peer("b", "10.7.0.2"))

	z, ready := make(zone, 10), make(chan string, 2)
	go Follow(ctx, FollowOptions{Client: c, Owner: "pb", StampKey: StampKey(fence.Key),
		Services: []bridge.Service{served.Service, unwritten.Service}, Zone: z, Ready: func(t string) { ready <- t }})
	if got := z.next(t).sets; len(got) != 1 || !got[0].Equal(served) {
		t.Fatalf("followed %+v, want only %s", got, served.Service.Topology)
	}
	if got := <-ready; got != "served" {
		t.Errorf("ready(%q), want served", got)
	}

	publish(t, leader, unwritten)
	got := z.next(t).sets
	for len(got) != 2 {
		got = z.next(t).sets
	}
	if got := <-ready; got != "unwritten" {
		t.Errorf("ready(%q), want unwritten once written", got)
	}
}
