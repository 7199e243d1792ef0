//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// requireNetns skips, loudly, without root or ip(8); under CI it fails.
func requireNetns(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "no ip command (iproute2)"
	}
	if why == "" {
		return
	}
	if bridgetest.CI() {
		t.Fatalf("partition tests need network namespaces, and CI=true: %s", why)
	}
	t.Skipf("SKIPPED: partition tests need root and ip(8) for network namespaces: %s", why)
}

func ipcmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// netns is a network namespace of the test's own; addresses in it exist
// nowhere else.
type netns struct{ name string }

func newNetns(t *testing.T, name string) *netns {
	t.Helper()
	ipcmd(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ipcmd(t, "-n", name, "link", "set", "lo", "up")
	return &netns{name: name}
}

// do runs fn on a thread switched into the namespace: sockets it opens
// belong to the namespace for good.
func (n *netns) do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + n.name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread() // else the thread dies with the goroutine
	}
	return ferr
}

func (n *netns) dial(network, addr string) (c net.Conn, err error) {
	n.do(func() error { c, err = net.DialTimeout(network, addr, 2*time.Second); return nil })
	return c, err
}

func (n *netns) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (n *netns) command(bin string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name, bin}, args...)...)
}

// hub is a namespace with a bridge, 10.77.0.254/24, that the others hang
// off by veth pairs: cutting a pair drops a namespace's packets, nothing
// is refused.
type hub struct {
	*netns
	id    string
	links map[string]string // namespace -> its veth's hub end
}

func newHub(t *testing.T) *hub {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	h := &hub{netns: newNetns(t, "pb"+id+"-hub"), id: id, links: map[string]string{}}
	ipcmd(t, "-n", h.name, "link", "add", "br0", "type", "bridge")
	ipcmd(t, "-n", h.name, "addr", "add", "10.77.0.254/24", "dev", "br0")
	ipcmd(t, "-n", h.name, "link", "set", "br0", "up")
	return h
}

// attach makes a namespace at addr (10.77.0.x) on the hub.
func (h *hub) attach(t *testing.T, name, addr string) *netns {
	t.Helper()
	n := newNetns(t, "pb"+h.id+"-"+name)
	end := "h-" + name
	ipcmd(t, "link", "add", "eth0", "netns", n.name, "type", "veth", "peer", "name", end, "netns", h.name)
	ipcmd(t, "-n", h.name, "link", "set", end, "master", "br0", "up")
	ipcmd(t, "-n", n.name, "addr", "add", addr+"/24", "dev", "eth0")
	ipcmd(t, "-n", n.name, "link", "set", "eth0", "up")
	h.links[n.name] = end
	return n
}

// cut takes the hub's end of n's link down: n's packets are dropped.
func (h *hub) cut(t *testing.T, n *netns) {
	ipcmd(t, "-n", h.name, "link", "set", h.links[n.name], "down")
}
func (h *hub) heal(t *testing.T, n *netns) {
	ipcmd(t, "-n", h.name, "link", "set", h.links[n.name], "up")
}

// catalogWrite is one transaction a replica sent to Consul that writes to
// the catalog, as its proxy saw it.
type catalogWrite struct {
	writer string
	sent   time.Time // reached the proxy
	at     time.Time // Consul answered
	landed bool      // Consul applied it (200)
}

// writeLog records every catalog write of every replica, through a proxy
// per replica in front of its Consul.
type writeLog struct {
	mu     sync.Mutex
	writes []catalogWrite
}

// proxy serves ln as Consul's HTTP API, forwarding to target through
// dial, and records writer's catalog transactions.
func (l *writeLog) proxy(t *testing.T, writer string, ln net.Listener, dial func(network, addr string) (net.Conn, error), target string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", target },
		Transport: &http.Transport{
			DialContext: func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) },
		},
		FlushInterval: -1,
		// Cancelled long polls are the replicas' business.
		ErrorLog: stdlog.New(io.Discard, "", 0),
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/v1/txn" {
			rp.ServeHTTP(w, r)
			return
		}
		sent := time.Now()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var ops []map[string]json.RawMessage
		json.Unmarshal(body, &ops)
		catalog := false
		for _, op := range ops {
			_, node := op["Node"]
			_, svc := op["Service"]
			_, check := op["Check"]
			catalog = catalog || node || svc || check
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		if catalog {
			l.mu.Lock()
			l.writes = append(l.writes, catalogWrite{writer: writer, sent: sent, at: time.Now(), landed: rec.status == http.StatusOK})
			l.mu.Unlock()
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (l *writeLog) all() []catalogWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]catalogWrite(nil), l.writes...)
}

// firstLanded returns the first write by someone other than not that
// landed after since.
func (l *writeLog) firstLanded(not string, since time.Time) (catalogWrite, bool) {
	for _, w := range l.all() {
		if w.landed && w.writer != not && w.at.After(since) {
			return w, true
		}
	}
	return catalogWrite{}, false
}

// summary counts writes by writer, landed and refused, in three periods.
func (l *writeLog) summary(cut, healed time.Time) string {
	type key struct{ writer, period string }
	counts := map[key][2]int{}
	var order []key
	for _, w := range l.all() {
		period := "before the cut"
		switch {
		case !w.at.Before(healed):
			period = "after the heal"
		case !w.at.Before(cut):
			period = "during the cut"
		}
		k := key{w.writer, period}
		c, seen := counts[k]
		if !seen {
			order = append(order, k)
		}
		if w.landed {
			c[0]++
		} else {
			c[1]++
		}
		counts[k] = c
	}
	var b strings.Builder
	for _, k := range order {
		fmt.Fprintf(&b, "  %s %s: %d landed, %d refused\n", k.writer, k.period, counts[k][0], counts[k][1])
	}
	return b.String()
}

// startInNetns starts a process in n, logging to the test on failure.
func startInNetns(t *testing.T, n *netns, what string, bin string, args ...string) {
	t.Helper()
	cmd := n.command(bin, args...)
	var logs bridgetest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s's log:\n%s", what, logs.String())
		}
	})
}

// waitConsulLeader waits until the Consul agent at addr in n knows a
// leader.
func waitConsulLeader(t *testing.T, n *netns, addr string, within time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, a string) (net.Conn, error) { return n.dial(network, a) },
	}}
	deadline := time.Now().Add(within)
	for {
		resp, err := c.Get("http://" + addr + "/v1/status/leader")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && len(bytes.Trim(b, "\"\n")) > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul in %s: no leader after %v", n.name, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// haEnv is the environment of a replica with the default HA timings.
func haEnv(apiURL, consulAddr string) []string {
	return []string{
		"PEERBRIDGE_SERVICE=web", "PEERBRIDGE_PROVIDER=droplet", "PEERBRIDGE_DROPLET_API_URL=" + apiURL,
		"DIGITALOCEAN_TOKEN=" + fakeDOToken, "PEERBRIDGE_POLL_INTERVAL=1s", "PEERBRIDGE_NODE_BASENAME=web",
		"PEERBRIDGE_HA=true", "CONSUL_HTTP_ADDR=" + consulAddr,
		"PEERBRIDGE_DNS_ADDR=127.0.0.1:5300", "PEERBRIDGE_HTTP_ADDR=127.0.0.1:8654", "PEERBRIDGE_LOG_LEVEL=debug",
	}
}

// partition cuts the leader's namespace off the hub, measures the time
// until another replica's first catalog write lands, checks that the cut
// leader stepped down before it and kept answering DNS, heals, and checks
// that one leader remains and no write of the old leader landed after its
// successor's first. It returns the failover time.
func partition(t *testing.T, h *hub, fakeAPI *droplets, rs []*replica, nsOf map[*replica]*netns, log *writeLog) time.Duration {
	t.Helper()
	old := waitOneLeader(t, rs, 30*time.Second)
	for _, r := range rs {
		waitAnswer(t, r, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, 15*time.Second)
	}
	serial := sameSerial(t, rs, 15*time.Second)
	t.Logf("leader %s; every replica serves serial %d", old.name, serial)

	// Every replica answers DNS throughout, the cut one from its last
	// snapshot.
	probeCtx, stopProbe := context.WithCancel(context.Background())
	var probes, failed sync.Map // by replica name: counts
	var probing sync.WaitGroup
	for _, r := range rs {
		probing.Go(func() {
			n, bad := 0, 0
			for probeCtx.Err() == nil {
				if got := r.answer(1, "web.peers.internal."); len(got) < 3 || strings.HasPrefix(got[0], "error") {
					bad++
				}
				n++
				time.Sleep(100 * time.Millisecond)
			}
			probes.Store(r.name, n)
			failed.Store(r.name, bad)
		})
	}
	defer func() {
		stopProbe()
		probing.Wait()
		for _, r := range rs {
			n, _ := probes.Load(r.name)
			bad, _ := failed.Load(r.name)
			if bad.(int) > 0 {
				t.Errorf("%s failed %d of %d DNS probes during the partition run", r.name, bad, n)
			} else {
				t.Logf("%s answered all %d DNS probes", r.name, n)
			}
		}
	}()

	fakeAPI.set("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9") // only a new leader can write this
	cut := time.Now()
	h.cut(t, nsOf[old])
	var steppedDown time.Time
	var first catalogWrite
	deadline := cut.Add(30 * time.Second)
	for {
		if steppedDown.IsZero() && old.status(t).Role == roleFollower {
			steppedDown = time.Now()
		}
		if w, ok := log.firstLanded(old.name, cut); ok {
			first = w
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no other replica wrote to the catalog within 30 s of the cut; writes:\n%s", log.summary(cut, deadline))
		}
		time.Sleep(20 * time.Millisecond)
	}
	failover := first.at.Sub(cut)
	t.Logf("cut %s off: %s's first catalog write landed after %v; %s reported follower after %v",
		old.name, first.writer, failover.Round(time.Millisecond), old.name, steppedDown.Sub(cut).Round(time.Millisecond))
	if steppedDown.IsZero() || steppedDown.After(first.at) {
		t.Errorf("%s still reported leader when %s wrote", old.name, first.writer)
	}
	if got := old.answer(1, "web.peers.internal."); len(got) != 3 {
		t.Errorf("the cut-off %s answers %v, want its last 3 records", old.name, got)
	}

	healed := time.Now()
	h.heal(t, nsOf[old])
	waitOneLeader(t, rs, 60*time.Second)
	for _, r := range rs {
		waitAnswer(t, r, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"}, 60*time.Second)
	}
	t.Logf("healed: every replica serves serial %d", sameSerial(t, rs, 15*time.Second))
	waitOneLeader(t, rs, 10*time.Second)
	for _, w := range log.all() {
		if w.writer == old.name && w.landed && w.at.After(first.at) {
			t.Errorf("a write of the old leader %s landed at +%v, after %s's first at +%v",
				old.name, w.at.Sub(cut), first.writer, first.at.Sub(cut))
		}
	}
	t.Logf("catalog writes by writer:\n%s", log.summary(cut, healed))
	return failover
}

// partitionSetup finds consul, builds peerbridge, and makes the hub with
// the provider's API on it, at http://10.77.0.254:8080.
func partitionSetup(t *testing.T) (consul, bin string, h *hub, fakeAPI *droplets) {
	t.Helper()
	requireNetns(t)
	consul = bridgetest.ConsulBinary(t)
	bin = buildPeerbridge(t)
	h = newHub(t)
	fakeAPI = newDroplets(t)
	fakeAPI.set("10.0.0.1", "10.0.0.2", "10.0.0.3")
	api := &http.Server{Handler: fakeAPI}
	go api.Serve(h.listen(t, "10.77.0.254:8080"))
	t.Cleanup(func() { api.Close() })
	return consul, bin, h, fakeAPI
}

// TestHAPartitionOneAgent: three replicas and one Consul agent, each in
// its own network namespace; the leader's link is cut (its packets
// dropped), with the default HA timings.
func TestHAPartitionOneAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs peerbridge and consul in network namespaces")
	}
	consul, bin, h, fakeAPI := partitionSetup(t)

	cns := h.attach(t, "c", "10.77.0.100")
	startInNetns(t, cns, "consul", consul, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", "8500", "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-log-level", "warn")
	waitConsulLeader(t, cns, "127.0.0.1:8500", 30*time.Second)

	log := &writeLog{}
	nsOf := map[*replica]*netns{}
	var rs []*replica
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("r%d", i)
		n := h.attach(t, name, fmt.Sprintf("10.77.0.%d", i))
		ln := cns.listen(t, fmt.Sprintf("10.77.0.100:%d", 8500+i))
		log.proxy(t, name, ln, cns.dial, "127.0.0.1:8500")
		r := startReplicaCmd(t, n.command(bin), name, haEnv("http://10.77.0.254:8080", ln.Addr().String()), n.dial)
		nsOf[r] = n
		rs = append(rs, r)
	}
	if took := partition(t, h, fakeAPI, rs, nsOf, log); took > 10*time.Second {
		t.Errorf("failover after the cut took %v, the contract is 10 s", took)
	}
}

// TestHAPartitionRaft: three Consul servers (real Raft) and a replica
// beside each, a namespace per pair; the leader's pair is cut off, so that
// the Consul server the leader talks to loses the others. Its check can no
// longer reach the servers that decide: serfHealth, by gossip, invalidates
// the session.
func TestHAPartitionRaft(t *testing.T) {
	if testing.Short() {
		t.Skip("runs peerbridge and consul in network namespaces")
	}
	consul, bin, h, fakeAPI := partitionSetup(t)

	var servers []*netns
	for i := 1; i <= 3; i++ {
		servers = append(servers, h.attach(t, fmt.Sprintf("s%d", i), fmt.Sprintf("10.77.0.1%d", i)))
	}
	for i, n := range servers {
		startInNetns(t, n, fmt.Sprintf("consul s%d", i+1), consul, "agent", "-server", "-bootstrap-expect=3",
			"-node", fmt.Sprintf("s%d", i+1), "-data-dir", t.TempDir(), "-bind", fmt.Sprintf("10.77.0.1%d", i+1),
			"-client", "127.0.0.1", "-retry-join", "10.77.0.11", "-retry-join", "10.77.0.12", "-retry-join", "10.77.0.13",
			"-http-port", "8500", "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-log-level", "warn",
			// Consul's recommended production Raft timing. Autopilot keeps
			// the cut server in the Raft configuration: removed, it takes
			// Consul a minute or more to take it back after the heal, which
			// is Consul's business, not what this test is about.
			"-hcl", "performance { raft_multiplier = 1 }", "-hcl", "autopilot { cleanup_dead_servers = false }")
	}
	for _, n := range servers {
		waitConsulLeader(t, n, "127.0.0.1:8500", 60*time.Second)
	}

	log := &writeLog{}
	nsOf := map[*replica]*netns{}
	var rs []*replica
	for i, n := range servers {
		name := fmt.Sprintf("r%d", i+1)
		ln := n.listen(t, "127.0.0.1:8501")
		log.proxy(t, name, ln, n.dial, "127.0.0.1:8500")
		r := startReplicaCmd(t, n.command(bin), name, haEnv("http://10.77.0.254:8080", ln.Addr().String()), n.dial)
		nsOf[r] = n
		rs = append(rs, r)
	}
	took := partition(t, h, fakeAPI, rs, nsOf, log)
	// Bounded by Consul's gossip failure detection, not by peerbridge's
	// timings: see bridge/consulpub/README.md.
	if took > 20*time.Second {
		t.Errorf("failover after the server's cut took %v", took)
	}
}
