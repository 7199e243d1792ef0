package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/dnsserver/dnstest"
)

// proc is one peerbridge process of a restart test.
type proc struct {
	cmd       *exec.Cmd
	dns, http string
	logs      func() string
	exited    chan error
}

// startProc starts bin with env (and files as fds 3, 4, ...), LISTEN_PID
// set to its own pid as systemd sets it when files are passed, and waits
// until it is ready.
func startProc(t *testing.T, bin string, env []string, files ...*os.File) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	if len(files) > 0 {
		// systemd sets LISTEN_PID in the child; a shell's $$ is the pid
		// that exec keeps.
		cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0"`, bin)
		cmd.ExtraFiles = files
	}
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	t.Cleanup(func() { cmd.Process.Kill() })
	p.dns, p.http, p.logs = listenAddrs(t, stderr)
	go func() { p.exited <- cmd.Wait() }()
	waitReady(t, "http://"+p.http)
	return p
}

// term sends SIGTERM and waits for the exit; it returns how long that took.
func (p *proc) term(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if code := exitCode(err); code != 0 {
			t.Errorf("exit status %d after SIGTERM (%v)\n%s", code, err, p.logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM\n%s", p.logs())
	}
	return time.Since(start)
}

func restartEnv(dnsAddr string, extra ...string) []string {
	env := cleanEnv()
	for k, v := range quickStart {
		env = append(env, k+"="+v)
	}
	// The race detector sleeps a second before a process exits: that is
	// not the stop's time.
	env = append(env, "GORACE=atexit_sleep_ms=0")
	return append(append(env, "PEERBRIDGE_DNS_ADDR="+dnsAddr), extra...)
}

func awaitAnswers(t *testing.T, s *dnstest.Stream, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Answered() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d answered, waiting for %d: %+v", s.Answered(), n, s.Stop())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func reportStream(t *testing.T, what string, r dnstest.StreamResult, stops []time.Duration) {
	t.Helper()
	t.Logf("%s: %d queries, %d lost, %d answers without the records, %d refused attempts, %d retries, longest answer %v, SIGTERM to exit %v",
		what, r.Sent, r.Lost, r.Bad, r.Refused, r.Retries, r.MaxLatency, stops)
	if r.Lost > 0 {
		t.Errorf("%s: %d of %d queries lost; last error: %s", what, r.Lost, r.Sent, r.LastError)
	}
	if r.Bad > 0 {
		// A DNS client such as libcluster's DNSPoll takes an answer
		// without peers as "no nodes" and does not retry it.
		t.Errorf("%s: %d answers without the peers; last: %s", what, r.Bad, r.LastError)
	}
}

// TestSocketActivationRestart: the test holds the sockets as systemd does
// and passes them to each process; queries sent while no process runs
// wait in the kernel for the next one. Three restarts under a steady
// stream lose no query.
func TestSocketActivationRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPeerbridge(t)
	udp, tcp := listenPair(t)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer httpLn.Close()
	var files []*os.File
	for _, s := range []interface{ File() (*os.File, error) }{udp, tcp, httpLn.(*net.TCPListener)} {
		f, err := s.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	t.Run("a socket of the wrong kind is a clear error", func(t *testing.T) {
		cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0"`, bin)
		cmd.Env = restartEnv("127.0.0.1:0", "LISTEN_FDS=3", "LISTEN_FDNAMES=dns-tcp:dns-udp:http")
		cmd.ExtraFiles = files
		out, err := cmd.CombinedOutput()
		if exitCode(err) != 1 || !strings.Contains(string(out), "fd 4 (dns-udp): not a UDP socket") {
			t.Fatalf("exit %v:\n%s", err, out)
		}
	})

	// The process's own address is never bound: it serves the passed
	// sockets.
	env := restartEnv("127.0.0.1:1", "LISTEN_FDS=3", "LISTEN_FDNAMES=dns-udp:dns-tcp:http")

	p := startProc(t, bin, env, files...)
	if p.dns != udp.LocalAddr().String() || p.http != httpLn.Addr().String() {
		t.Fatalf("serves dns %s, http %s; want the passed %s and %s", p.dns, p.http, udp.LocalAddr(), httpLn.Addr())
	}
	if !strings.Contains(p.logs(), "msg=\"socket activation\"") {
		t.Errorf("no socket activation line in the log:\n%s", p.logs())
	}
	stream := dnstest.StartStream(p.dns, "myapp.peers.internal.", dns.TypeA, 3, 1)
	awaitAnswers(t, stream, 20)
	var stops []time.Duration
	for range 3 {
		stops = append(stops, p.term(t))
		p = startProc(t, bin, env, files...)
		awaitAnswers(t, stream, stream.Answered()+100)
	}
	reportStream(t, "socket activation, 3 restarts", stream.Stop(), stops)
}

// listenPair opens a UDP socket and a TCP listener on one free loopback
// port, without SO_REUSEPORT, as systemd's socket units do.
func listenPair(t *testing.T) (*net.UDPConn, *net.TCPListener) {
	t.Helper()
	for range 20 {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udp.LocalAddr().(*net.UDPAddr).Port})
		if err == nil {
			t.Cleanup(func() { udp.Close(); tcp.Close() })
			return udp, tcp
		}
		udp.Close()
	}
	t.Fatal("no free port for both UDP and TCP")
	return nil, nil
}

// TestReusePortRestart: each new process opens the same DNS address beside
// the running one (SO_REUSEPORT), then the old one gets SIGTERM, answers
// what is queued on its sockets and exits 0. Three hand-overs under a
// steady stream lose no query.
func TestReusePortRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPeerbridge(t)
	p := startProc(t, bin, restartEnv("127.0.0.1:0"))
	env := restartEnv(p.dns)
	stream := dnstest.StartStream(p.dns, "myapp.peers.internal.", dns.TypeA, 3, 1)
	awaitAnswers(t, stream, 20)
	var stops []time.Duration
	for range 3 {
		next := startProc(t, bin, env)
		if next.dns != p.dns {
			t.Fatalf("new process on %s, want %s", next.dns, p.dns)
		}
		awaitAnswers(t, stream, stream.Answered()+20)
		stops = append(stops, p.term(t))
		awaitAnswers(t, stream, stream.Answered()+20)
		p = next
	}
	reportStream(t, "SO_REUSEPORT, 3 hand-overs", stream.Stop(), stops)
	for i, d := range stops {
		if d > 5*time.Second { // two seconds, and room for a loaded machine
			t.Errorf("hand-over %d: SIGTERM to exit took %v", i+1, d)
		}
	}
}

// TestSIGTERMWithStuckConnections: five DNS clients that pipeline queries
// and never read their answers block the server's writes; SIGTERM still
// ends the process with status 0 within a couple of seconds.
func TestSIGTERMWithStuckConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPeerbridge(t)
	p := startProc(t, bin, restartEnv("127.0.0.1:0"))
	wire, err := new(dns.Msg).SetQuestion("myapp.peers.internal.", dns.TypeANY).Pack()
	if err != nil {
		t.Fatal(err)
	}
	frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(wire))), wire...)
	batch := bytes.Repeat(frame, 100_000) // far more answers than the socket buffers hold
	for range 5 {
		c, err := net.Dial("tcp", p.dns)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			c.Write(batch) // blocks once the server stops reading
		}()
	}
	// Stuck: the count of TCP answers no longer grows.
	tcpAnswers := func() int {
		n := 0
		for _, line := range strings.Split(get(t, "http://"+p.http+"/metrics"), "\n") {
			if strings.HasPrefix(line, "peerbridge_dns_answers_total{") && strings.Contains(line, `transport="tcp"`) {
				var v float64
				fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
				n += int(v)
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for last := -1; ; {
		time.Sleep(200 * time.Millisecond)
		n := tcpAnswers()
		if n > 0 && n == last {
			t.Logf("stuck after %d answers", n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("answers still growing after 30s: %d", n)
		}
		last = n
	}
	d := p.term(t)
	t.Logf("SIGTERM to exit with 5 stuck connections: %v", d)
	if d > 10*time.Second { // about 1.5 s
		t.Errorf("SIGTERM to exit took %v", d)
	}
}
