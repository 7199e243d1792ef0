package ecs

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
	"github.com/peerbridge/peerbridge/providers/ecs/ecstest"
)

// TestEndToEnd runs an ECS-shaped API and the EC2 stand-in on loopback
// through two providers (a Fargate service and a bridge-mode service),
// their reconcile loops and the DNS server, and asks dig: SRV records
// carry each task's own port (the container port for awsvpc tasks, the
// mapped host port for bridge tasks), two tasks on one instance share its
// address under their own names, a fault keeps the records, and a new
// task is published within a poll or two (the time is logged).
func TestEndToEnd(t *testing.T) {
	bridgetest.RequireTool(t, "dig", "apt-get install dnsutils")
	tasks, cis, instances := bridged(3, 2) // b..0 and b..2 share ci0 (10.0.0.1)
	for i := range tasks {
		tasks[i].Service, tasks[i].Family = "api", "api"
	}
	tasks = append(tasks, fargate(3)...)
	w := newWorld(t, tasks, cis, instances)
	w.ecs.PageSize = 2 // several pages a poll
	web, _ := newProvider(t, w, service("web"), 4000)
	api, _ := newProvider(t, w, service("api"), 4000)

	srv, addr := dnstest.Serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	// A short interval, so that the time to a new record is measured in
	// polls; no assertion depends on it.
	const interval = 100 * time.Millisecond
	polls := &bridgetest.Polls{}
	for name, p := range map[string]*Provider{"web": web, "api": api} {
		// Port 0: PEERBRIDGE_PORT is the tasks' container port, and each
		// task's own port is published (see the package comment).
		loop := bridge.NewLoop(bridge.LoopConfig{
			Service:  bridge.Service{Topology: name, Name: name, Provider: "ecs"},
			Interval: interval, Provider: p, Publishers: []bridge.Publisher{srv}, Observer: polls,
		})
		wg.Go(func() { loop.Run(ctx) })
	}

	// until asks (without dig, whose start-up would be measured too)
	// until name has want SRV records, and returns how long it took.
	until := func(name string, want int) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(new(dns.Msg).SetQuestion(name, dns.TypeSRV), addr)
			if err == nil && len(r.Answer) == want {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %d SRV records after 30s: %v %v", name, want, r, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	until("web.peers.internal.", 3)
	until("api.peers.internal.", 3)

	srvPorts := func(name string) []string {
		t.Helper()
		var out []string
		for _, l := range bridgetest.Dig(t, addr, name, "SRV") {
			f := strings.Fields(l) // priority weight port target
			out = append(out, strings.TrimSuffix(f[3], "."+name+".")+":"+f[2])
		}
		slices.Sort(out)
		return out
	}
	if got, want := srvPorts("api.peers.internal"), []string{
		"b0000000000000000000000000000000:32768", "b0000000000000000000000000000001:32769", "b0000000000000000000000000000002:32770",
	}; !slices.Equal(got, want) {
		t.Errorf("api SRV %q, want %q", got, want)
	}
	if got := srvPorts("web.peers.internal"); len(got) != 3 || !strings.HasSuffix(got[0], ":4000") || !strings.HasSuffix(got[2], ":4000") {
		t.Errorf("web SRV %q, want the container port 4000", got)
	}
	// Two tasks on one instance: the same address, each under its name.
	for _, id := range []string{"b0000000000000000000000000000000", "b0000000000000000000000000000002"} {
		if got := bridgetest.Dig(t, addr, id+".api.peers.internal", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
			t.Errorf("A of %s: %q", id, got)
		}
	}
	if got := bridgetest.Dig(t, addr, "00000000000000000000000000000001.web.peers.internal", "A"); !slices.Equal(got, []string{"10.1.0.2"}) {
		t.Errorf("A of a Fargate task: %q", got)
	}

	// A new bridge task on the second instance: DNS has it, with its port.
	w.ecs.Set(func(s *ecstest.Server) {
		s.Tasks = append(s.Tasks, ecstest.Task{ID: "newtask", Service: "api", Family: "api", ContainerInstance: "ci1",
			Bindings: [][2]int32{{4000, 33001}}})
	})
	took := until("api.peers.internal.", 4)
	t.Logf("a new task was in DNS %s after it appeared in the API (poll interval %s)", took.Round(time.Millisecond), interval)
	if got := srvPorts("api.peers.internal"); !slices.Contains(got, "newtask:33001") {
		t.Errorf("api SRV %q lacks newtask:33001", got)
	}

	// Throttled: DNS keeps the records.
	w.ecs.Set(func(s *ecstest.Server) { s.Fail = ecstest.Fault400("ThrottlingException", "Rate exceeded") })
	before := polls.Failures(bridge.FailureRateLimited)
	deadline := time.Now().Add(30 * time.Second)
	for polls.Failures(bridge.FailureRateLimited) < before+2 {
		if time.Now().After(deadline) {
			t.Fatal("no throttled polls")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := srvPorts("api.peers.internal"); len(got) != 4 {
		t.Fatalf("throttled: api SRV %q, want the 4 kept", got)
	}

	// Recovered, with a task stopped and another unhealthy: DNS follows.
	w.ecs.Set(func(s *ecstest.Server) {
		s.Fail = nil
		s.Tasks[0].LastStatus = "STOPPED"
		s.Tasks[1].Health = "UNHEALTHY"
	})
	until("api.peers.internal.", 2)
	if got := srvPorts("api.peers.internal"); !slices.Equal(got, []string{"b0000000000000000000000000000002:32770", "newtask:33001"}) {
		t.Errorf("after recovery: api SRV %q", got)
	}
}
