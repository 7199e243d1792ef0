package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/droplet/droplettest"
)

// droplets is droplettest's fake listing droplets web-<i> (id 100+i),
// each with one private address. It is an http.Handler, for a test that
// serves it on a listener of its own.
type droplets struct {
	*droplettest.API
	t testing.TB
}

func newDroplets(t testing.TB) *droplets {
	return &droplets{API: droplettest.New(t, nil), t: t}
}

func (d *droplets) set(addrs ...string) {
	template := droplettest.FixtureDroplets(d.t, "droplets_list_all.json")[0]
	list := make([]map[string]any, len(addrs))
	for i, a := range addrs {
		list[i] = droplettest.Copy(d.t, template)
		list[i]["id"], list[i]["name"], list[i]["status"] = 100+i, fmt.Sprintf("web-%d", i), "active"
		droplettest.SetAddrs(list[i], a, "", "")
	}
	d.Set(func(s *droplettest.State) { s.Droplets = list })
}

// replica is one peerbridge process.
type replica struct {
	name           string
	cmd            *exec.Cmd
	dnsAddr, httpA string
	logs           func() string
	exited         chan struct{}
	// dial connects to the replica's listeners: net.Dial, or a dial
	// inside the replica's network namespace.
	dial func(network, addr string) (net.Conn, error)
}

func startReplica(t *testing.T, bin, name string, env []string) *replica {
	t.Helper()
	return startReplicaCmd(t, exec.Command(bin), name, env, nil)
}

func startReplicaCmd(t *testing.T, cmd *exec.Cmd, name string, env []string, dial func(network, addr string) (net.Conn, error)) *replica {
	t.Helper()
	if dial == nil {
		dial = func(network, addr string) (net.Conn, error) { return net.DialTimeout(network, addr, time.Second) }
	}
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, cmd: cmd, exited: make(chan struct{}), dial: dial}
	r.dnsAddr, r.httpA, r.logs = listenAddrs(t, stderr)
	go func() { cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, r.logs())
		}
	})
	return r
}

func (r *replica) status(t *testing.T) statusDoc {
	t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext:       func(_ context.Context, network, addr string) (net.Conn, error) { return r.dial(network, addr) },
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("http://" + r.httpA + "/status")
	if err != nil {
		return statusDoc{}
	}
	defer resp.Body.Close()
	var doc statusDoc
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &doc)
	return doc
}

// answer is the replica's DNS answer for web's A records, sorted.
func (r *replica) answer(qtype uint16, name string) []string {
	m, err := r.exchange(new(dns.Msg).SetQuestion(name, qtype))
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, rr := range m.Answer {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

func (r *replica) exchange(q *dns.Msg) (*dns.Msg, error) {
	conn, err := r.dial("udp", r.dnsAddr)
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: conn}
	defer co.Close()
	co.SetDeadline(time.Now().Add(time.Second))
	if err := co.WriteMsg(q); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// serial is the SOA serial the replica serves, 0 when it does not answer.
func (r *replica) serial() uint32 {
	m, err := r.exchange(new(dns.Msg).SetQuestion("peers.internal.", dns.TypeSOA))
	if err != nil || len(m.Answer) != 1 {
		return 0
	}
	if soa, ok := m.Answer[0].(*dns.SOA); ok {
		return soa.Serial
	}
	return 0
}

// sameSerial waits until every replica serves the same serial, and returns
// it.
func sameSerial(t *testing.T, rs []*replica, within time.Duration) uint32 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var serials []uint32
		for _, r := range rs {
			serials = append(serials, r.serial())
		}
		if serials[0] != 0 && len(slices.Compact(slices.Clone(serials))) == 1 {
			return serials[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serials %v after %v, want one", serials, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaders returns the replicas that say they lead, and whether every
// replica answered.
func leaders(t *testing.T, rs []*replica) []*replica {
	var out []*replica
	for _, r := range rs {
		if r.status(t).Role == "leader" {
			out = append(out, r)
		}
	}
	return out
}

// waitOneLeader waits until exactly one of rs leads and the others follow.
func waitOneLeader(t *testing.T, rs []*replica, within time.Duration) *replica {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ls := leaders(t, rs)
		followers := 0
		for _, r := range rs {
			if r.status(t).Role == "follower" {
				followers++
			}
		}
		if len(ls) == 1 && followers == len(rs)-1 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d leaders, %d followers among %d replicas", within, len(ls), followers, len(rs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitAnswer(t *testing.T, r *replica, want []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := r.answer(dns.TypeA, "web.peers.internal.")
		var addrs []string
		for _, rr := range got {
			f := strings.Fields(rr)
			addrs = append(addrs, f[len(f)-1])
		}
		slices.Sort(addrs)
		if slices.Equal(addrs, want) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s answers %v after %v, want %v", r.name, addrs, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// createIndexes returns the catalog's CreateIndex of web's nodes.
func createIndexes(t *testing.T, c *api.Client) map[string]uint64 {
	t.Helper()
	entries, _, err := c.Catalog().Service("web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, e := range entries {
		out[e.Node] = e.CreateIndex
	}
	return out
}

func without(rs []*replica, gone *replica) []*replica {
	return slices.DeleteFunc(slices.Clone(rs), func(r *replica) bool { return r == gone })
}

// TestHA runs three replicas with one owner against a real Consul: one
// leads, all answer alike, followers follow within a second, and the
// lead passes on at a clean stop, at kill -9, and across a Consul restart,
// without deregistering anything.
func TestHA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs peerbridge processes for about a minute")
	}
	agent := bridgetest.StartConsul(t, "")
	bin := buildPeerbridge(t)
	fakeAPI := newDroplets(t)
	fakeAPI.set("10.0.0.1", "10.0.0.2", "10.0.0.3")
	fake := httptest.NewServer(fakeAPI)
	defer fake.Close()
	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}

	// The default HA timings: the 10 s failover is their contract.
	env := []string{
		"PEERBRIDGE_SERVICE=web", "PEERBRIDGE_PROVIDER=droplet", "PEERBRIDGE_DROPLET_API_URL=" + fake.URL,
		"DIGITALOCEAN_TOKEN=" + fakeDOToken, "PEERBRIDGE_POLL_INTERVAL=1s", "PEERBRIDGE_NODE_BASENAME=web",
		"PEERBRIDGE_HA=true",
		"CONSUL_HTTP_ADDR=" + agent.Addr, "PEERBRIDGE_DNS_ADDR=127.0.0.1:0", "PEERBRIDGE_HTTP_ADDR=127.0.0.1:0",
		"PEERBRIDGE_LOG_LEVEL=debug",
	}
	top := t
	rs := []*replica{startReplica(t, bin, "a", env), startReplica(t, bin, "b", env), startReplica(t, bin, "c", env)}

	leader := waitOneLeader(t, rs, 20*time.Second)
	t.Logf("leader: %s", leader.name)
	for _, r := range rs {
		waitAnswer(t, r, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, 10*time.Second)
		waitReady(t, "http://"+r.httpA)
	}

	t.Run("DNS answers are identical on every replica", func(t *testing.T) {
		for _, q := range []struct {
			qtype uint16
			name  string
		}{{dns.TypeSRV, "web.peers.internal."}, {dns.TypeTXT, "web-1.web.peers.internal."}, {dns.TypeA, "web-2.web.peers.internal."}} {
			want := rs[0].answer(q.qtype, q.name)
			if len(want) == 0 {
				t.Fatalf("%s %s: no answer", dns.TypeToString[q.qtype], q.name)
			}
			for _, r := range rs[1:] {
				if got := r.answer(q.qtype, q.name); !slices.Equal(got, want) {
					t.Errorf("%s %s: %s answers %q, %s %q", dns.TypeToString[q.qtype], q.name, r.name, got, rs[0].name, want)
				}
			}
		}
	})

	t.Run("every replica serves the same SOA serial", func(t *testing.T) {
		t.Logf("serial %d on all", sameSerial(t, rs, 10*time.Second))
	})

	t.Run("followers answer the leader's change within a second", func(t *testing.T) {
		fakeAPI.set("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
		want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
		waitAnswer(t, leader, want, 10*time.Second)
		for _, r := range without(rs, leader) {
			took := waitAnswer(t, r, want, 5*time.Second)
			t.Logf("%s followed the leader's DNS in %v", r.name, took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("%s took %v to follow, want at most 1s", r.name, took)
			}
		}
	})

	before := createIndexes(t, client)
	if len(before) != 4 {
		t.Fatalf("catalog holds %v, want 4 nodes", before)
	}

	t.Run("a clean stop hands over within 2 s", func(t *testing.T) {
		leader.cmd.Process.Signal(syscall.SIGTERM)
		<-leader.exited
		start := time.Now()
		rs = without(rs, leader)
		leader = waitOneLeader(t, rs, 5*time.Second)
		took := time.Since(start)
		t.Logf("new leader %s after %v", leader.name, took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("hand-over took %v, want at most 2s", took)
		}
		if got := createIndexes(t, client); !maps.Equal(got, before) {
			t.Errorf("catalog changed across the hand-over: %v, was %v", got, before)
		}
	})

	t.Run("kill -9, five times: the new leader writes within 10 s", func(t *testing.T) {
		var took []time.Duration
		peers := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
		for run := range 5 {
			// Three replicas each time: a fresh one replaces the killed,
			// and lives on past this subtest.
			rs = append(rs, startReplica(top, bin, fmt.Sprintf("k%d", run), env))
			waitOneLeader(t, rs, 20*time.Second)
			sameSerial(t, rs, 10*time.Second)
			leader = waitOneLeader(t, rs, 20*time.Second)
			peers = append(peers, fmt.Sprintf("10.0.1.%d", run+1))
			fakeAPI.set(peers...) // only a new leader can write this
			leader.cmd.Process.Kill()
			start := time.Now()
			<-leader.exited
			rs = without(rs, leader)
			deadline := start.Add(30 * time.Second)
			for len(createIndexes(t, client)) != len(peers) {
				if time.Now().After(deadline) {
					t.Fatalf("run %d: catalog %v 30 s after the kill, want %d nodes", run, createIndexes(t, client), len(peers))
				}
				time.Sleep(20 * time.Millisecond)
			}
			took = append(took, time.Since(start))
			t.Logf("run %d: killed %s, the new leader's set was in the catalog after %v", run, leader.name, took[run].Round(time.Millisecond))
		}
		slices.Sort(took)
		t.Logf("kill -9 failover over %d runs: min %v, median %v, max %v", len(took),
			took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		if took[len(took)-1] > 10*time.Second {
			t.Errorf("failover took up to %v, the contract is 10 s", took[len(took)-1])
		}
		after := createIndexes(t, client)
		for node, idx := range before {
			if after[node] != idx {
				t.Errorf("%s: CreateIndex %d, was %d: deregistered and registered again", node, after[node], idx)
			}
		}
		leader = waitOneLeader(t, rs, 20*time.Second)
	})

	t.Run("Consul restarted: one leader again, catalog refilled", func(t *testing.T) {
		fakeAPI.set("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5")
		for _, r := range rs {
			waitAnswer(t, r, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}, 10*time.Second)
		}
		agent.Stop()
		time.Sleep(2 * time.Second)
		for _, r := range rs {
			if got := r.answer(dns.TypeA, "web.peers.internal."); len(got) != 5 {
				t.Errorf("%s answers %d records while Consul is down, want the last 5", r.name, len(got))
			}
		}
		agent.Restart()
		waitOneLeader(t, rs, 45*time.Second)
		deadline := time.Now().Add(20 * time.Second)
		for len(createIndexes(t, client)) != 5 {
			if time.Now().After(deadline) {
				t.Fatalf("catalog %v after the restart, want the 5 peers back", createIndexes(t, client))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
