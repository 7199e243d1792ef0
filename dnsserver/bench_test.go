package dnsserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

const benchServerEnv = "PEERBRIDGE_BENCH_SERVER_PEERS"

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

// BenchmarkSocket queries a server in a child process over loopback, one
// query in flight, and reports the server's own CPU time per query
// (server-us/op) besides the round trip (ns/op), which includes this
// client.
func BenchmarkSocket(b *testing.B) {
	for _, n := range benchSizes {
		child := startBenchServer(b, n)
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			for _, tcp := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/%s/peers=%d", transport(tcp), dns.TypeToString[qtype], n), func(b *testing.B) {
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

type benchChild struct {
	addr string
	in   io.Writer
	out  *bufio.Reader
}

// startBenchServer runs this test binary as a DNS server for n peers.
func startBenchServer(b *testing.B, n int) *benchChild {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", benchServerEnv, n))
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
	c := &benchChild{in: in, out: bufio.NewReader(out)}
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
func benchServer(peers string) int {
	n, err := strconv.Atoi(peers)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := New(Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err == nil {
		err = srv.Publish(context.Background(), bridge.Set{Service: myapp, Peers: manyPeers(n)}.Normalize())
	}
	pc, ln, lerr := Listen("127.0.0.1:0")
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
	go func() { done <- srv.Serve(ctx, pc, ln) }()
	fmt.Println(pc.LocalAddr())

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
