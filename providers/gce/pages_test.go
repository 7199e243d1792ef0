package gce

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"

	"google.golang.org/api/compute/v1"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/gce/gcetest"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// find returns the instance named name.
func find(w *gcetest.World, name string) *compute.Instance {
	for _, in := range w.Instances {
		if in.Name == name {
			return in
		}
	}
	panic("no instance " + name)
}

// TestUnchangedPagesNotDecoded: a second listing of the same instances
// decodes no page, aggregated or zone by zone, and publishes the same
// peers; an instance that changed costs the decoding of its page only,
// and its change is published.
func TestUnchangedPagesNotDecoded(t *testing.T) {
	for _, zoneList := range []string{"", zones[0] + "," + zones[1]} {
		t.Run(fmt.Sprintf("zones=%q", zoneList), func(t *testing.T) {
			fake := gcetest.New(t, many(4000)) // aggregated: 8 pages; a zone: 2 or 3
			adc(t, fake)
			p, _ := newProvider(t, fake, Env{GceZones: zoneList})
			first, err := p.Peers(context.Background())
			pages := p.decoded.Load()
			if err != nil || len(first) == 0 || pages < 2 {
				t.Fatalf("first poll: %d peers, %d pages decoded, %v", len(first), pages, err)
			}
			second, err := p.Peers(context.Background())
			if err != nil || p.decoded.Load() != pages {
				t.Fatalf("steady poll decoded %d pages (%v), want none", p.decoded.Load()-pages, err)
			}
			if !platformtest.EqualSets(first, second) {
				t.Fatal("steady poll published another set")
			}
			fake.Set(func(w *gcetest.World) { find(w, "node-3000").NetworkInterfaces[0].NetworkIP = "10.99.0.1" })
			third, err := p.Peers(context.Background())
			if err != nil || p.decoded.Load() != pages+1 {
				t.Fatalf("one instance changed: %d pages decoded (%v), want 1", p.decoded.Load()-pages, err)
			}
			if want := platformtest.AddrOf(first, "node-3000"); want != "absent" {
				if got := platformtest.AddrOf(third, "node-3000"); got != "[10.99.0.1]" {
					t.Errorf("the changed instance is published with %s, want [10.99.0.1]", got)
				}
			}
			if len(third) != len(first) {
				t.Errorf("%d peers, want %d", len(third), len(first))
			}
		})
	}
}

// TestFailedListingKeepsPages: a listing that fails half way does not
// replace the pages remembered.
func TestFailedListingKeepsPages(t *testing.T) {
	fake := gcetest.New(t, many(1500)) // 3 aggregated pages
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	fake.Set(func(w *gcetest.World) {
		w.Instances[0].NetworkInterfaces[0].NetworkIP = "10.99.0.1" // page 1
		w.Fault = func(_ *http.Request, page int) (int, string, http.Header) {
			if page == 3 {
				return 503, gcetest.Error(503, "backendError", "down"), nil
			}
			return 0, "", nil
		}
	})
	if _, err := p.Peers(context.Background()); err == nil {
		t.Fatal("a listing with a failed page succeeded")
	}
	before := p.decoded.Load()
	fake.Set(func(w *gcetest.World) { w.Fault = nil })
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("after a failed listing, %d pages decoded, want 1 (the changed page)", n)
	}
	if got := platformtest.AddrOf(peers, "node-0"); got != "[10.99.0.1]" {
		t.Errorf("node-0 published with %s, want [10.99.0.1]", got)
	}
}

// TestDuplicateAcrossCachedPage: an instance on a decoded page and on an
// unchanged one is still a listing whose pages disagree.
func TestDuplicateAcrossCachedPage(t *testing.T) {
	fake := gcetest.New(t, many(1000)) // 2 aggregated pages
	adc(t, fake)
	p, _ := newProvider(t, fake, Env{})
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The last instance of the listing takes the first one's id.
	fake.Set(func(w *gcetest.World) { find(w, "node-999").Id = find(w, "node-0").Id })
	before := p.decoded.Load()
	if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrInconsistentListing) {
		t.Fatalf("Peers = %v, want an inconsistent listing", err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("%d pages decoded, want 1: page 1 was unchanged", n)
	}
}

// TestPagesPublishSameSet: over random changes, a provider that reuses
// unchanged pages returns the same peers, and skips as many, as one
// that decodes every page.
func TestPagesPublishSameSet(t *testing.T) {
	fake := gcetest.New(t, many(1200))
	adc(t, fake)
	cached, _ := newProvider(t, fake, Env{})
	rng := rand.New(rand.NewPCG(30, 4))
	next := 1200
	for step := range 8 { // 8 random steps cover every kind of change; more only cost CI minutes under -race
		fake.Set(func(w *gcetest.World) {
			for range rng.IntN(3) { // 0: a steady poll
				i := rng.IntN(len(w.Instances))
				in := w.Instances[i]
				switch rng.IntN(6) {
				case 0:
					in.NetworkInterfaces[0].NetworkIP = fmt.Sprintf("10.200.%d.%d", step, i%250)
				case 1:
					in.NetworkInterfaces[0].NetworkIP = "" // skipped
				case 2:
					in.Status = []string{"RUNNING", "STOPPING", "PROVISIONING"}[rng.IntN(3)]
				case 3:
					in.Labels = map[string]string{"app": fmt.Sprint("web-", step)}
				case 4:
					w.Instances = slices.Delete(w.Instances, i, i+1)
				case 5:
					w.Instances = slices.Insert(w.Instances, i, gcetest.Instance(next, fmt.Sprintf("node-%d", next), zones[next%len(zones)], "RUNNING", nil))
					next++
				}
			}
		})
		fresh, _ := newProvider(t, fake, Env{})
		skippedBefore := cached.Skipped()
		got, err := cached.Peers(context.Background())
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		want, err := fresh.Peers(context.Background())
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !platformtest.EqualSets(got, want) {
			t.Fatalf("step %d: the provider with remembered pages returned another set (%d peers, want %d)", step, len(got), len(want))
		}
		if s, w := cached.Skipped()-skippedBefore, fresh.Skipped(); s != w {
			t.Fatalf("step %d: %d instances skipped, want %d", step, s, w)
		}
	}
	if decoded, total := cached.decoded.Load(), cached.Requests(); decoded >= total {
		t.Errorf("%d pages decoded of %d requests: none was reused", decoded, total)
	}
}
