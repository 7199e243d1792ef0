package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// dnsPoll is the Erlang DNSPoll stand-in (testdata/dnspoll.escript).
type dnsPoll struct {
	stdin io.WriteCloser
	polls atomic.Int64
	mu    sync.Mutex
	lines []string
}

func startDNSPoll(t *testing.T, port int) *dnsPoll {
	t.Helper()
	escript := bridgetest.RequireTool(t, "escript", "apt-get install erlang-base")
	cmd := exec.Command(escript, filepath.Join("testdata", "dnspoll.escript"), "web.peers.internal", fmt.Sprint(port))
	d := &dnsPoll{}
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "POLL ") {
				d.polls.Add(1)
				continue
			}
			d.mu.Lock()
			d.lines = append(d.lines, line)
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		d.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return d
}

func (d *dnsPoll) events() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.lines...)
}

func (d *dnsPoll) has(line string) bool {
	for _, l := range d.events() {
		if l == line {
			return true
		}
	}
	return false
}

func (d *dnsPoll) command(t *testing.T, cmd, ack string) {
	t.Helper()
	n := strings.Count(strings.Join(d.events(), "\n"), ack)
	fmt.Fprintln(d.stdin, cmd)
	waitFor(t, ack, 10*time.Second, func() bool { return strings.Count(strings.Join(d.events(), "\n"), ack) > n })
}

// pollsMore waits until the client has polled n more times.
func (d *dnsPoll) pollsMore(t *testing.T, n int64) {
	t.Helper()
	target := d.polls.Load() + n
	waitFor(t, fmt.Sprintf("%d more DNSPoll lookups", n), 30*time.Second, func() bool { return d.polls.Load() >= target })
}

// TestDNSPollKeepsItsNodes runs a DNS client that disconnects every node
// missing from an answer, as libcluster's DNSPoll does (an Erlang
// inet_res loop), against peerbridge through an API outage, a SIGKILL and
// a restart with the API still down (served from the state file), and a
// listing that misses a peer: it never disconnects a node.
//
// The restart's own gap (no process on the port for a moment) is the
// socket-activation and SO_REUSEPORT hand-over's to close; the client
// pauses across it here, and resumes as soon as the new process listens.
func TestDNSPollKeepsItsNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs peerbridge and Erlang")
	}
	bin := buildPeerbridge(t)
	api, url := startOutage(t, nil, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	port := freePort(t)
	env := stateEnv(url, filepath.Join(t.TempDir(), "state.json"), fmt.Sprintf("PEERBRIDGE_DNS_ADDR=127.0.0.1:%d", port))
	all := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}

	pb := startReplica(t, bin, "first", env)
	waitAnswer(t, pb, all, 10*time.Second)
	waitFor(t, "the state file written", 10*time.Second, func() bool { return strings.Contains(pb.logs(), "peer set changed") })
	client := startDNSPoll(t, port)
	waitFor(t, "DNSPoll connecting every node", 30*time.Second, func() bool { return client.has("CONNECT 10.0.0.1,10.0.0.2,10.0.0.3") })

	// An API outage of several polls.
	api.down.Store(true)
	waitFor(t, "failed polls", 10*time.Second, func() bool {
		return strings.Count(pb.logs(), "keeping the last good peer set") >= 2
	})
	client.pollsMore(t, 20)

	// SIGKILL, and a restart with the API still down.
	client.command(t, "pause", "PAUSED")
	pb.kill(t)
	pb = startReplica(t, bin, "restarted", env)
	client.command(t, "resume", "RESUMED")
	client.pollsMore(t, 20)
	waitFor(t, "a failed poll after the restart", 10*time.Second, func() bool {
		return strings.Contains(pb.logs(), "keeping the last good peer set")
	})
	client.pollsMore(t, 20)

	// The API back, and one listing that misses a peer.
	api.mu.Lock()
	api.skip = 101 // web-1, 10.0.0.2: gone from the next listing alone
	api.mu.Unlock()
	api.down.Store(false)
	waitFor(t, "the listing that missed a peer, then one with it", 20*time.Second, func() bool {
		if !strings.Contains(pb.logs(), "peers missing from the poll stay") {
			return false
		}
		st := pb.status(t).Topologies[0]
		return st.LastSuccess != nil && !st.Held
	})
	client.pollsMore(t, 20)

	for _, l := range client.events() {
		if strings.HasPrefix(l, "DISCONNECT") {
			t.Errorf("DNSPoll disconnected nodes: %s (events %q)", l, client.events())
		}
	}
	t.Logf("DNSPoll events: %q, %d lookups", client.events(), client.polls.Load())
}
