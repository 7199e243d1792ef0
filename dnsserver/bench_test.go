package dnsserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

const benchServerEnv = "PEERBRIDGE_BENCH_SERVER_PEERS"

// benchHeapEnv names a file for the bench server to write a heap profile
// to once its sets are published, after a GC: where BenchmarkRSS's bytes
// are (go tool pprof -sample_index=inuse_space).
const benchHeapEnv = "PEERBRIDGE_BENCH_HEAP_PROFILE"

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "heap in use %.1f MB, objects %d, sys %.1f MB, allocated %.1f MB, GCs %d\n", float64(ms.HeapInuse)/(1<<20), ms.HeapObjects, float64(ms.Sys)/(1<<20), float64(ms.TotalAlloc)/(1<<20), ms.NumGC)
	return f.Close()
}

func TestMain(m *testing.M) {
	if n := os.Getenv(benchServerEnv); n != "" {
		os.Exit(benchServer(n))
	}
	os.Exit(m.Run())
}

var benchSizes = []int{3, 100, 1000}

// BenchmarkAnswer measures the query path alone: the answer built from the
// snapshot and packed, as ServeDNS does, without sockets.
func BenchmarkAnswer(b *testing.B) {
	for _, n := range benchSizes {
		srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.Publish(context.Background(), bridge.Set{Service: myapp, Peers: manyPeers(n)}.Normalize()); err != nil {
			b.Fatal(err)
		}
		snap := srv.Snapshot()
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			for _, tcp := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/%s/peers=%d", transport(tcp), dns.TypeToString[qtype], n), func(b *testing.B) {
					req := new(dns.Msg).SetQuestion("myapp.peers.internal.", qtype)
					req.SetEdns0(1232, false)
					buf := make([]byte, dns.MaxMsgSize)
					b.ReportAllocs()
					for b.Loop() {
						if _, err := snap.answer(req, tcp).PackBuffer(buf); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkSocket queries a server in a child process over loopback, four
// queries in flight, and reports the server's own CPU time per query
// (server-us/op) besides the time per query (ns/op), which includes this
// client. peers=3/plain is the baseline: a plain miekg/dns handler that
// builds the same three-record answer on every query.
func BenchmarkSocket(b *testing.B) {
	for _, n := range append(benchSizes, plainHandler) {
		child := startBenchServer(b, n)
		if n == plainHandler {
			n = 3
		}
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			for _, tcp := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/peers=%d", transport(tcp), dns.TypeToString[qtype], n)
				if child.plain {
					name += "/plain"
				}
				b.Run(name, func(b *testing.B) {
					req := new(dns.Msg).SetQuestion("myapp.peers.internal.", qtype)
					req.SetEdns0(1232, false)
					wire, err := req.Pack()
					if err != nil {
						b.Fatal(err)
					}
					// Several queries in flight, as a load generator keeps
					// them: one at a time measures the scheduler waking up.
					b.SetParallelism(4)
					before := child.cpu(b)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						conn, err := net.Dial(transport(tcp), child.addr)
						if err != nil {
							b.Error(err)
							return
						}
						defer conn.Close()
						ask := roundTrip(conn, wire, tcp)
						for pb.Next() {
							if err := ask(); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.StopTimer()
					used := child.cpu(b) - before
					b.ReportMetric(float64(used.Nanoseconds())/1e3/float64(b.N), "server-us/op")
				})
			}
		}
	}
}

func transport(tcp bool) string {
	if tcp {
		return "tcp"
	}
	return "udp"
}

// roundTrip returns a function that sends wire and reads one reply.
func roundTrip(conn net.Conn, wire []byte, tcp bool) func() error {
	buf := make([]byte, dns.MaxMsgSize+2)
	framed := binary.BigEndian.AppendUint16(nil, uint16(len(wire)))
	framed = append(framed, wire...)
	return func() error {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if !tcp {
			if _, err := conn.Write(wire); err != nil {
				return err
			}
			_, err := conn.Read(buf)
			return err
		}
		if _, err := conn.Write(framed); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, buf[:2]); err != nil {
			return err
		}
		_, err := io.ReadFull(conn, buf[:binary.BigEndian.Uint16(buf)])
		return err
	}
}

// plainHandler, as a peer count, asks the child for the baseline handler.
const plainHandler = -1

type benchChild struct {
	pid   int
	plain bool
	addr  string
	in    io.Writer
	out   *bufio.Reader
}

// startBenchServer runs this test binary as a DNS server for n peers.
func startBenchServer(b *testing.B, n int, spec ...string) *benchChild {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", benchServerEnv, n))
	if len(spec) > 0 {
		cmd.Env = append(os.Environ(), benchServerEnv+"="+spec[0])
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close() // the child exits when its stdin closes
		cmd.Wait()
	})
	c := &benchChild{in: in, out: bufio.NewReader(out), plain: n == plainHandler, pid: cmd.Process.Pid}
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatalf("bench server did not start: %v", err)
	}
	c.addr = strings.TrimSpace(line)
	return c
}

// cpu asks the child for the CPU time it has used so far.
func (c *benchChild) cpu(b *testing.B) time.Duration {
	if _, err := io.WriteString(c.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	us, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(us) * time.Microsecond
}

// benchServer is the child's side: serve n peers on loopback, print the
// address, answer "cpu" with the process's CPU microseconds, exit at EOF.
//
// "rrl:N" serves N peers with the response rate limit on;
// "plain:N" serves the baseline handler with N peers instead; .ci/bench
// runs it that way, next to Consul and CoreDNS. "TxN" serves T topologies
// of N peers each.
func benchServer(peers string) int {
	var rl RateLimit
	if rest, ok := strings.CutPrefix(peers, "rrl:"); ok {
		// A limit no benchmark client reaches: every query pays for the
		// limiter and is answered.
		peers, rl = rest, RateLimit{PerSecond: MaxRateLimit, Slip: 2}
	}
	plainPeers := 3
	if rest, ok := strings.CutPrefix(peers, "plain:"); ok {
		peers = strconv.Itoa(plainHandler)
		plainPeers, _ = strconv.Atoi(rest)
	}
	topologies := 1
	if t, rest, ok := strings.Cut(peers, "x"); ok {
		topologies, _ = strconv.Atoi(t)
		peers = rest
	}
	n, err := strconv.Atoi(peers)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second, RateLimit: rl})
	if err == nil && n != plainHandler {
		err = srv.Publish(context.Background(), bridge.Set{Service: myapp, Peers: manyPeers(n)}.Normalize())
	}
	for i := range topologies - 1 {
		svc := bridge.Service{Topology: fmt.Sprintf("t%d", i), Name: fmt.Sprintf("t%d", i), Provider: "static", Port: 1}
		if err == nil {
			err = srv.Publish(context.Background(), bridge.Set{Service: svc, Peers: manyPeers(n)}.Normalize())
		}
	}
	if path := os.Getenv(benchHeapEnv); path != "" && err == nil {
		err = writeHeapProfile(path)
	}
	ls, lerr := Listen("127.0.0.1:0")
	if err == nil {
		err = lerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	if n == plainHandler {
		go func() { done <- servePlain(ctx, ls, plainPeers) }()
	} else {
		go func() { done <- srv.Serve(ctx, ls) }()
	}
	fmt.Println(ls.Addr())

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000)
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// servePlain is the baseline: miekg/dns's server with a handler that builds
// the peers' A records (or SRV records and their addresses) for every
// query, as a straightforward handler would.
func servePlain(ctx context.Context, ls *Listeners, peers int) error {
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		for i := range peers {
			host := fmt.Sprintf("node%d.myapp.peers.internal.", i)
			a := &dns.A{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))}
			if q.Qtype == dns.TypeSRV {
				m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 5},
					Weight: 1, Port: 4369, Target: host})
				m.Extra = append(m.Extra, a)
				continue
			}
			a.Hdr.Name = q.Name
			m.Answer = append(m.Answer, a)
		}
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			m.SetEdns0(1232, opt.Do())
			size = min(int(opt.UDPSize()), 1232)
		}
		if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
			size = dns.MaxMsgSize
		}
		m.Truncate(size)
		w.WriteMsg(m)
	})
	// One socket, as a plain server has: the kernel would send queries to
	// the others too.
	for _, c := range ls.UDP[1:] {
		c.Close()
	}
	udp := &dns.Server{PacketConn: ls.UDP[0], Handler: handler}
	tcp := &dns.Server{Listener: ls.TCP, Handler: handler, MaxTCPQueries: -1}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-ctx.Done()
	udp.Shutdown()
	tcp.Shutdown()
	return nil
}

// BenchmarkPublish is the DNS side of reconciling a 10,000-peer topology:
// one changed set published until its snapshot is served, every record
// and packed answer in place.
//
//	peer-changed  one peer's address changes, back and forth
//	peer-added    one peer joins and leaves, in turn
//	all-new       every peer differs from the set before
//	equal         the same peers again, as a steady poll publishes them
//	transfers     peer-changed with zone transfers allowed: the IXFR diff too
//	topologies=10 peer-changed while nine other 10,000-peer topologies are served
func BenchmarkPublish(b *testing.B) {
	base := manyPeers(10_000)
	changed := slices.Clone(base)
	changed[5000].Addrs = []netip.Addr{netip.MustParseAddr("10.200.0.1")}
	shifted := manyPeers(10_000)
	for i := range shifted {
		shifted[i].Addrs = []netip.Addr{netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)})}
	}
	for _, c := range []struct {
		name   string
		sets   [2][]bridge.Peer
		cfg    Config
		others int
	}{
		{name: "peer-changed", sets: [2][]bridge.Peer{base, changed}},
		{name: "peer-added", sets: [2][]bridge.Peer{base, manyPeers(10_001)}},
		{name: "all-new", sets: [2][]bridge.Peer{base, shifted}},
		{name: "equal", sets: [2][]bridge.Peer{base, base}},
		{name: "transfers", sets: [2][]bridge.Peer{base, changed}, cfg: Config{Transfer: Transfer{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}},
		{name: "topologies=10", sets: [2][]bridge.Peer{base, changed}, others: 9},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := c.cfg
			cfg.Zone, cfg.TTL, cfg.NegativeTTL = "peers.internal.", 5*time.Second, 5*time.Second
			srv, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			for i := range c.others {
				svc := bridge.Service{Topology: fmt.Sprintf("t%d", i), Name: fmt.Sprintf("t%d", i), Provider: "static", Port: 1}
				if err := srv.Publish(context.Background(), bridge.Set{Service: svc, Peers: base}.Normalize()); err != nil {
					b.Fatal(err)
				}
			}
			sets := [2]bridge.Set{
				bridge.Set{Service: myapp, Peers: c.sets[0]}.Normalize(),
				bridge.Set{Service: myapp, Peers: c.sets[1]}.Normalize(),
			}
			if err := srv.Publish(context.Background(), sets[1]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := srv.Publish(context.Background(), sets[i%2]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkRSS reports the resident memory of a process serving 10
// topologies of 10,000 peers each (every record and packed answer built,
// with the garbage of building them as the Go GC leaves it), as rss-MB. The process is this
// test binary as a DNS server: the peerbridge command cannot be given that
// many static peers, since Linux caps one environment variable at 128 KiB.
func BenchmarkRSS(b *testing.B) {
	for b.Loop() {
		child := startBenchServer(b, 0, "10x10000")
		child.cpu(b) // answered after the sets were published
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", child.pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				b.ReportMetric(float64(kb)/1024, "rss-MB")
			}
		}
	}
}

// BenchmarkTruncatedUDP is the CPU of a UDP answer at 2,000 peers, where
// A and SRV answers do not fit: the fast path's packed answer for a
// peer's own name (fits), the packed truncated answers, and the slow path
// (an EDNS size the fast path leaves to it), which samples the RRset.
func BenchmarkTruncatedUDP(b *testing.B) {
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Publish(context.Background(), bridge.Set{Service: myapp, Peers: manyPeers(2000)}.Normalize()); err != nil {
		b.Fatal(err)
	}
	snap := srv.Snapshot()
	for _, c := range []struct {
		name  string
		qname string
		qtype uint16
		size  uint16
		slow  bool
	}{
		{"fast/fits/A", "node7.myapp.peers.internal.", dns.TypeA, 1232, false},
		{"fast/truncated/A", "myapp.peers.internal.", dns.TypeA, 1232, false},
		{"fast/truncated/SRV", "myapp.peers.internal.", dns.TypeSRV, 1232, false},
		{"slow/truncated/A", "myapp.peers.internal.", dns.TypeA, 1000, true},
		{"slow/truncated/SRV", "myapp.peers.internal.", dns.TypeSRV, 1000, true},
	} {
		b.Run(c.name+"/peers=2000", func(b *testing.B) {
			req := new(dns.Msg).SetQuestion(c.qname, c.qtype)
			req.SetEdns0(c.size, false)
			wire, err := req.Pack()
			if err != nil {
				b.Fatal(err)
			}
			out := make([]byte, maxUDPSize)
			b.ReportAllocs()
			for b.Loop() {
				n, _ := snap.fastAnswer(wire, out, false)
				if c.slow != (n == 0) {
					b.Fatalf("fast path answered: %v", n > 0)
				}
				if n == 0 && srv.slowUDP(wire, nil) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
