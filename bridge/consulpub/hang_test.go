package consulpub

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// hangProxy is a TCP proxy in front of Consul that can be made to hang:
// a request sent while it hangs is never answered, on a connection that
// stays open, as with a Consul server that vanished mid-request or a
// stalled load balancer. Connections made after the hang work again.
type hangProxy struct {
	addr string

	mu    sync.Mutex
	open  chan struct{} // closed while the proxy forwards
	conns map[net.Conn]bool
}

func startHangProxy(t *testing.T, upstream string) *hangProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hp := &hangProxy{addr: ln.Addr().String(), open: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(hp.open)
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		hp.mu.Lock()
		for c := range hp.conns {
			c.Close() // idle keep-alive connections too
		}
		hp.mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hp.mu.Lock()
			hp.conns[c] = true
			hp.mu.Unlock()
			conns.Go(func() { hp.serve(c, upstream) })
		}
	}()
	return hp
}

func (hp *hangProxy) gate() chan struct{} {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.open
}

// hang loses every request from now on; release makes new ones work
// again.
func (hp *hangProxy) hang() {
	hp.mu.Lock()
	hp.open = make(chan struct{})
	hp.mu.Unlock()
}

func (hp *hangProxy) release() { close(hp.gate()) }

func (hp *hangProxy) serve(c net.Conn, upstream string) {
	defer func() {
		c.Close()
		hp.mu.Lock()
		delete(hp.conns, c)
		hp.mu.Unlock()
	}()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	go func() {
		io.Copy(c, u)
		c.Close()
	}()
	buf := make([]byte, 32<<10)
	lost := false // a request sent during a hang: never answered
	for {
		n, err := c.Read(buf)
		if n > 0 && !lost {
			select {
			case <-hp.gate():
			default:
				lost = true
			}
		}
		if n > 0 && !lost {
			if _, err := u.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Issue 25, finding 4: the publisher's requests had no deadline, so one
// that hung stopped Consul publishing for good (after a 10 s hang, nothing
// was written for 80 s and more), uncounted. Now the hung request fails
// the sync, which is counted and retried with backoff: once the hang ends
// the set is written.
func TestConsulHangIsCountedAndRetried(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	proxy := startHangProxy(t, agent.Addr)
	direct := client(t, agent.Addr, "", nil)
	p, err := New(Options{Client: client(t, proxy.addr, "", nil), Owner: "pb", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()

	p.Publish(ctx, set("hung", peer("a", "10.3.0.1")))
	waitNodes(t, direct, "hung", 1)

	proxy.hang()
	p.Publish(ctx, set("hung", peer("a", "10.3.0.1"), peer("b", "10.3.0.2")))
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed sync counted 30s into a hang of Consul: a request without a deadline")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Stats(); !strings.Contains(st.LastError, "deadline") {
		t.Errorf("Stats().LastError = %q, want the deadline named", st.LastError)
	}
	if err := p.Publish(ctx, set("hung", peer("a", "10.3.0.1"), peer("b", "10.3.0.2"))); err == nil {
		t.Error("Publish reports no error for a topology whose sync failed")
	}

	t.Logf("sync failed %d times during the hang", p.Stats().Failures)
	released := time.Now()
	proxy.release()
	// Retried with backoff (30 s at most between tries).
	deadline = time.Now().Add(60 * time.Second)
	for len(nodes(t, direct, "hung")) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("nothing written within 60s of the hang's end")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("written %s after the hang ended", time.Since(released))
	for p.Stats().LastError != "" {
		if time.Now().After(deadline) {
			t.Fatalf("Stats().LastError = %q after the set was written", p.Stats().LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
}
