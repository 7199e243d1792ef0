package ecs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/peerbridge/peerbridge/providers/ecs/ecstest"
	"github.com/peerbridge/peerbridge/providers/internal/platform/platformtest"
)

// TestUnchangedDescriptionsNotDecoded: a second poll of the same tasks
// decodes no DescribeTasks answer and publishes the same peers; a task
// that changed costs the decoding of its call's answer only, and its
// change is published.
func TestUnchangedDescriptionsNotDecoded(t *testing.T) {
	w := newWorld(t, fargate(250), nil, nil) // 3 DescribeTasks calls
	p, _ := newProvider(t, w, service("web"), 4000)
	first, err := p.Peers(context.Background())
	if err != nil || len(first) != 250 || p.decoded.Load() != 3 {
		t.Fatalf("first poll: %d peers, %d answers decoded, %v; want 250, 3", len(first), p.decoded.Load(), err)
	}
	second, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 3 {
		t.Fatalf("steady poll decoded %d answers (%v), want none", p.decoded.Load()-3, err)
	}
	if !platformtest.EqualSets(first, second) {
		t.Fatal("steady poll published another set")
	}
	w.ecs.Set(func(s *ecstest.Server) { s.Tasks[150].IPv4 = "10.99.0.1" }) // the second call's
	third, err := p.Peers(context.Background())
	if err != nil || p.decoded.Load() != 4 {
		t.Fatalf("one task changed: %d answers decoded (%v), want 1", p.decoded.Load()-3, err)
	}
	if got := platformtest.AddrOf(third, fmt.Sprintf("%032x", 150)); got != "[10.99.0.1]" {
		t.Errorf("the changed task is published with %s, want [10.99.0.1]", got)
	}
	if len(third) != 250 {
		t.Errorf("%d peers, want 250", len(third))
	}
}

// TestFailedListingKeepsDescriptions: a poll that fails half way does
// not replace the answers remembered, and an answer with failures is
// never remembered.
func TestFailedListingKeepsDescriptions(t *testing.T) {
	w := newWorld(t, fargate(300), nil, nil)
	p, _ := newProvider(t, w, service("web"), 4000)
	if _, err := p.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.ecs.Set(func(s *ecstest.Server) {
		s.Tasks[10].IPv4 = "10.99.0.1" // the first call's
		s.Missing = []string{s.Tasks[250].ID}
	})
	if _, err := p.Peers(context.Background()); err == nil {
		t.Fatal("a poll with a task described as missing succeeded")
	}
	before := p.decoded.Load()
	w.ecs.Set(func(s *ecstest.Server) { s.Missing = nil })
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := p.decoded.Load() - before; n != 1 {
		t.Errorf("after a failed poll, %d answers decoded, want 1 (the changed one)", n)
	}
	if got := platformtest.AddrOf(peers, fmt.Sprintf("%032x", 10)); got != "[10.99.0.1]" {
		t.Errorf("task 10 published with %s, want [10.99.0.1]", got)
	}
}

// TestRememberedMatchesFresh: over random changes to the tasks (moved,
// stopped, unhealthy, started, gone, unmapped), a provider that remembers
// answers publishes what a new one does, bridge and awsvpc tasks alike.
func TestRememberedMatchesFresh(t *testing.T) {
	tasks, cis, instances := bridged(120, 4)
	tasks = append(tasks, fargate(150)...)
	w := newWorld(t, tasks, cis, instances)
	p, _ := newProvider(t, w, service("web"), 4000)
	rng := rand.New(rand.NewPCG(30, 1))
	next := 1000
	for round := range 25 {
		w.ecs.Set(func(s *ecstest.Server) {
			for range rng.IntN(3) + 1 {
				i := rng.IntN(len(s.Tasks))
				switch rng.IntN(6) {
				case 0:
					if s.Tasks[i].IPv4 != "" {
						s.Tasks[i].IPv4 = fmt.Sprintf("10.2.%d.%d", round, i%250+1)
					}
				case 1:
					s.Tasks[i].LastStatus = "STOPPED"
				case 2:
					s.Tasks[i].Health = []types.HealthStatus{types.HealthStatusUnhealthy, types.HealthStatusHealthy}[rng.IntN(2)]
				case 3:
					next++
					s.Tasks = append(s.Tasks, ecstest.Task{ID: fmt.Sprintf("n%031x", next), Service: "web", Family: "web", Revision: 3,
						IPv4: fmt.Sprintf("10.3.%d.%d", next/250, next%250+1)})
				case 4:
					s.Tasks = append(s.Tasks[:i], s.Tasks[i+1:]...)
				case 5:
					if s.Tasks[i].ContainerInstance != "" {
						s.Tasks[i].Bindings = [][2]int32{{9100, 40000}}
					}
				}
			}
		})
		got, err := p.Peers(context.Background())
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		fresh, _ := newProvider(t, w, service("web"), 4000)
		want, err := fresh.Peers(context.Background())
		if err != nil {
			t.Fatalf("round %d, a new provider: %v", round, err)
		}
		if !platformtest.EqualSets(got, want) {
			t.Fatalf("round %d: the remembering provider published %d peers, a new one %d", round, len(got), len(want))
		}
	}
	if calls := w.ecs.Count("DescribeTasks"); p.decoded.Load() >= int64(calls)/2 {
		t.Errorf("%d of the answers decoded: the memory was not used", p.decoded.Load())
	}
}

// replay answers from what the handlers at targets (one a poll, in
// turn: which picks) answered the first time each request came: the
// fake encodes every answer with the SDK's schemas, which would cost the
// benchmark more CPU than the provider's own work.
func replay(b *testing.B, targets []string, which *atomic.Int64) string {
	type answer struct {
		status int
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	seen := map[string]answer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		target := targets[which.Load()%int64(len(targets))]
		key := target + r.Header.Get("X-Amz-Target") + string(body)
		mu.Lock()
		a, ok := seen[key]
		mu.Unlock()
		if !ok {
			req, _ := http.NewRequest(r.Method, target+r.URL.Path, bytes.NewReader(body))
			req.Header = r.Header.Clone()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			a = answer{resp.StatusCode, resp.Header, got}
			mu.Lock()
			seen[key] = a
			mu.Unlock()
		}
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		w.Write(a.body)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// benchPoll measures a poll of n Fargate tasks; changed makes every poll
// find one task changed since the last (two fakes, one task apart,
// answer poll and poll about).
func benchPoll(b *testing.B, n int, changed bool) {
	other := fargate(n)
	other[n/2].IPv4 = "10.99.0.1"
	w, w2 := newWorld(b, fargate(n), nil, nil), newWorld(b, other, nil, nil)
	var which atomic.Int64
	awsEnv(b, w)
	b.Setenv("AWS_ENDPOINT_URL_ECS", replay(b, []string{w.ecs.URL(), w2.ecs.URL()}, &which))
	opts, err := Configure(service("web"))
	if err != nil {
		b.Fatal(err)
	}
	opts.ContainerPort = 4000
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	var next func()
	if changed {
		next = func() { which.Add(1) }
	}
	platformtest.BenchPolls(b, n, p.Peers, p.decoded.Load, next)
}

// BenchmarkPollSteady is a steady poll of tasks that did not change.
func BenchmarkPollSteady(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) { benchPoll(b, n, false) })
	}
}

// BenchmarkPollOneChanged is a poll that finds one task changed.
func BenchmarkPollOneChanged(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) { benchPoll(b, n, true) })
	}
}
