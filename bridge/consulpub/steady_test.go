package consulpub

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// readCounter counts a client's requests to Consul's health service
// endpoint: full reads (no filter) and index queries (with one), and the
// writes; with failWrites set, it fails every write before it leaves.
type readCounter struct {
	full, probes, writes atomic.Int64
	failWrites           atomic.Bool
}

func (c *readCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method != http.MethodGet:
		if c.failWrites.Load() {
			return nil, errors.New("write failed on purpose")
		}
		c.writes.Add(1)
	case strings.HasPrefix(r.URL.Path, "/v1/health/service/") && r.URL.Query().Has("filter"):
		c.probes.Add(1)
	case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
		c.full.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// counts is a snapshot of a readCounter.
type counts struct{ full, probes, writes int64 }

func (c *readCounter) load() counts {
	return counts{c.full.Load(), c.probes.Load(), c.writes.Load()}
}

func (a counts) minus(b counts) counts {
	return counts{a.full - b.full, a.probes - b.probes, a.writes - b.writes}
}

// checkedSet is a set whose peers carry a health verdict, so that every
// entry has a node, a service and a check.
func checkedSet(service string, names ...string) bridge.Set {
	var peers []bridge.Peer
	for i, n := range names {
		p := peer(n, "10.1.0."+string(rune('1'+i)))
		p.Health = bridge.HealthPassing
		p.Attrs = map[string]string{"region": "nyc3"}
		peers = append(peers, p)
	}
	return set(service, peers...)
}

// TestSteadySyncsSkipTheFullRead runs against a real agent: a sync of an
// unchanged set asks Consul for the service's index alone, and reads and
// plans only when the index moved, or every FullReadEvery syncs.
func TestSteadySyncsSkipTheFullRead(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	rc := &readCounter{}
	c := client(t, agent.Addr, "", rc)
	plain := client(t, agent.Addr, "", nil) // the operator's hand
	ctx := context.Background()

	// sync publishes s and syncs, and returns what that took.
	sync := func(t *testing.T, p *Publisher, s bridge.Set) (counts, error) {
		t.Helper()
		before := rc.load()
		p.Publish(ctx, s)
		err := p.Sync(ctx)
		return rc.load().minus(before), err
	}
	mustSync := func(t *testing.T, p *Publisher, s bridge.Set) counts {
		t.Helper()
		n, err := sync(t, p, s)
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
		return n
	}
	// settle syncs s until a sync makes no full read: the state every
	// drift below starts from.
	settle := func(t *testing.T, p *Publisher, s bridge.Set) {
		t.Helper()
		for range 3 {
			if mustSync(t, p, s).full == 0 {
				return
			}
		}
		t.Fatal("3 syncs of an unchanged set, each with a full read")
	}

	t.Run("steady syncs read no entries, up to the bound", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := checkedSet("steady-idx", "a", "b", "c")
		if n := mustSync(t, p, s); n.full != 1 || n.writes != 1 {
			t.Fatalf("first sync: %+v, want 1 full read and 1 write", n)
		}
		// The first sync's read is older than its own writes: the next
		// reads again, finds nothing to do, and remembers the index.
		if n := mustSync(t, p, s); n.full != 1 || n.probes != 0 || n.writes != 0 {
			t.Fatalf("second sync: %+v, want 1 full read, no write", n)
		}
		for i := range FullReadEvery - 1 {
			if n := mustSync(t, p, s); n.full != 0 || n.probes != 1 || n.writes != 0 {
				t.Fatalf("steady sync %d: %+v, want 1 index query alone", i+1, n)
			}
		}
		if n := mustSync(t, p, s); n.full != 1 || n.writes != 0 {
			t.Fatalf("sync %d after the full read: %+v, want a full read again", FullReadEvery, n)
		}
		if n := mustSync(t, p, s); n.full != 0 {
			t.Fatalf("after the bound's full read: %+v, want none", n)
		}
	})

	t.Run("a changed set reads in full", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := checkedSet("changed-idx", "a", "b")
		settle(t, p, s)
		n := mustSync(t, p, checkedSet("changed-idx", "a", "b", "c"))
		if n.full != 1 || n.writes != 1 || len(nodes(t, plain, "changed-idx")) != 3 {
			t.Fatalf("a peer added: %+v, %d nodes; want 1 full read, 1 write, 3 nodes", n, len(nodes(t, plain, "changed-idx")))
		}
	})

	// Each drift by hand moves the service's index; the next sync reads
	// in full and repairs it.
	for _, d := range []struct {
		name  string
		drift func(t *testing.T, s bridge.Set)
	}{
		{"a node deregistered", func(t *testing.T, s bridge.Set) {
			if _, err := plain.Catalog().Deregister(&api.CatalogDeregistration{Node: "pb-" + s.Service.Name + "-a"}, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"a service's meta edited", func(t *testing.T, s bridge.Set) {
			reg := Desired("pb", nil, s)["pb-"+s.Service.Name+"-b"]
			reg.Service.Meta["region"] = "edited"
			reg.Checks = nil // the check stays as it is
			if _, err := plain.Catalog().Register(reg, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"a node's meta edited", func(t *testing.T, s bridge.Set) {
			reg := Desired("pb", nil, s)["pb-"+s.Service.Name+"-b"]
			reg.NodeMeta["team"] = "ops"
			reg.Service, reg.Checks, reg.SkipNodeUpdate = nil, nil, false
			if _, err := plain.Catalog().Register(reg, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"a check deleted", func(t *testing.T, s bridge.Set) {
			dereg := &api.CatalogDeregistration{Node: "pb-" + s.Service.Name + "-c", CheckID: checkIDFor(s.Service.Name)}
			if _, err := plain.Catalog().Deregister(dereg, nil); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run("drift repaired: "+d.name, func(t *testing.T) {
			service := "drift-" + strings.ReplaceAll(d.name, " ", "-")
			service = strings.ReplaceAll(service, "'", "")
			s := checkedSet(service, "a", "b", "c")
			p := newPublisher(t, c, "pb")
			settle(t, p, s)
			d.drift(t, s)
			if n := mustSync(t, p, s); n.full != 1 || n.writes != 1 {
				t.Errorf("sync after the drift: %+v, want 1 full read and 1 write", n)
			}
			want := Desired("pb", nil, s)
			have, _, err := plain.Health().Service(service, "", false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ch := plan("pb", want, have); len(have) != 3 || ch.Writes() != 0 {
				t.Errorf("after the repair: %d entries, %d writes still due", len(have), ch.Writes())
			}
			if n := mustSync(t, p, s); n.full != 1 || n.writes != 0 {
				t.Errorf("sync after the repair: %+v, want 1 full read (of a read newer than the writes), no write", n)
			}
			if n := mustSync(t, p, s); n.full != 0 || n.writes != 0 {
				t.Errorf("steady again: %+v, want no full read", n)
			}
		})
	}

	t.Run("another owner's change costs one full read", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := checkedSet("shared-idx", "a", "b")
		settle(t, p, s)
		other := newPublisher(t, plain, "other")
		publish(t, other, checkedSet("shared-idx", "x"))
		if n := mustSync(t, p, s); n.full != 1 || n.writes != 0 {
			t.Errorf("after another owner's write: %+v, want 1 full read, no write", n)
		}
		if n := mustSync(t, p, s); n.full != 0 || n.probes != 1 {
			t.Errorf("steady again: %+v, want the index query alone", n)
		}
	})

	t.Run("a failed sync records no index", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := checkedSet("failed-idx", "a", "b")
		settle(t, p, s)
		if _, err := plain.Catalog().Deregister(&api.CatalogDeregistration{Node: "pb-failed-idx-a"}, nil); err != nil {
			t.Fatal(err)
		}
		rc.failWrites.Store(true)
		for i := range 2 {
			// The index does not move while the repair fails: a
			// remembered index would skip the second sync.
			if n, err := sync(t, p, s); err == nil || n.full != 1 {
				t.Errorf("sync %d with writes failing: %+v, %v; want a full read and an error", i+1, n, err)
			}
		}
		rc.failWrites.Store(false)
		if n := mustSync(t, p, s); n.full != 1 || n.writes != 1 || len(nodes(t, plain, "failed-idx")) != 2 {
			t.Errorf("once writes pass: %+v, want the repair", n)
		}
	})

	t.Run("a refused entry records no index", func(t *testing.T) {
		// A node by hand with the name peerbridge gives peer b.
		reg := &api.CatalogRegistration{Node: "pb-refused-idx-b", Address: "192.0.2.9",
			Service: &api.AgentService{ID: "mine", Service: "mine", Port: 1}}
		if _, err := plain.Catalog().Register(reg, nil); err != nil {
			t.Fatal(err)
		}
		p := newPublisher(t, c, "pb")
		s := checkedSet("refused-idx", "a", "b")
		for i := range 3 {
			if n, err := sync(t, p, s); err == nil || n.full != 1 {
				t.Errorf("sync %d: %+v, %v; want a full read and the refusal", i+1, n, err)
			}
		}
	})
}

// TestRenamedInstanceNoticedWithinBound: an instance re-registered by hand
// under another service name (same node, same service id) leaves this
// service's index where it was: Consul bumps the new name's index only.
// The full read that FullReadEvery bounds notices it (and, the node being
// taken since the read, reports the entry refused, as a sync without the
// index query does).
func TestRenamedInstanceNoticedWithinBound(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	rc := &readCounter{}
	c := client(t, agent.Addr, "", rc)
	plain := client(t, agent.Addr, "", nil)
	p := newPublisher(t, c, "pb")
	s := checkedSet("renamed", "a", "b", "c")
	publish(t, p, s)
	publish(t, p, s) // remembers the index
	moved := Desired("pb", nil, s)["pb-renamed-c"]
	moved.Service.Service = "elsewhere"
	moved.Checks = nil
	if _, err := plain.Catalog().Register(moved, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for syncs := 1; ; syncs++ {
		if syncs > FullReadEvery {
			t.Fatalf("%d syncs and the renamed instance went unnoticed", syncs-1)
		}
		before := rc.load()
		p.Publish(ctx, s)
		err := p.Sync(ctx)
		n := rc.load().minus(before)
		if err == nil && n.full != 0 {
			t.Fatalf("sync %d: a full read found nothing to do", syncs)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "pb-renamed-c") || n.full != 1 {
				t.Fatalf("sync %d: %+v, %v; want a full read that finds pb-renamed-c", syncs, n, err)
			}
			t.Logf("noticed at sync %d", syncs)
			return
		}
	}
}

// BenchmarkSteadySync publishes and syncs an unchanged set of 10,000 peers
// against a real agent: the publisher's own CPU per steady sync (the
// agent's is its own), and the full reads it made (0 but every
// FullReadEvery-th).
func BenchmarkSteadySync(b *testing.B) {
	agent := bridgetest.StartConsul(b, "")
	rc := &readCounter{}
	p := newPublisher(b, client(b, agent.Addr, "", rc), "pb")
	s, _ := churnSets(10_000, 0)
	publish(b, p, s)
	publish(b, p, s) // the read after the writes
	before := rc.load()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		publish(b, p, s)
	}
	b.StopTimer()
	n := rc.load().minus(before)
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/1000/float64(b.N), "ms-cpu/op")
	b.ReportMetric(float64(n.full)/float64(b.N), "full-reads/op")
	if n.writes != 0 {
		b.Fatalf("%d writes in steady syncs", n.writes)
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
