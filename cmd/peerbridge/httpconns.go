package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxHTTPConnsLimit bounds PEERBRIDGE_HTTP_MAX_CONNS: more would only move
// the limit to the process's file descriptors.
const maxHTTPConnsLimit = 1 << 20

func checkHTTPMaxConns(n int) error {
	if n < 1 || n > maxHTTPConnsLimit {
		return fmt.Errorf("%d is not between 1 and %d", n, maxHTTPConnsLimit)
	}
	return nil
}

// httpConnLimiter caps the HTTP connections open at once, which net/http
// does not: without a cap, idle keep-alive connections can take every file
// descriptor, and DNS over TCP and the liveness probe with them. At the cap
// a new connection closes the one idle the longest (a keep-alive
// connection between requests, or one that has not sent a request yet);
// when every connection is busy with a request it waits for one to end,
// which the server's timeouts bound. The server's ConnState must be
// connState, which tells it which connections are idle.
type httpConnLimiter struct {
	net.Listener
	max     int
	evicted atomic.Uint64

	mu      sync.Mutex
	conns   map[net.Conn]*httpConn
	changed chan struct{} // a connection closed or went idle
	done    chan struct{}
	once    sync.Once
}

// httpConn is a connection and since when it is idle (zero: busy).
type httpConn struct {
	net.Conn
	l         *httpConnLimiter
	idleSince atomic.Int64 // Unix nanoseconds
	once      sync.Once
}

// defaultHTTPMaxConns is PEERBRIDGE_HTTP_MAX_CONNS's default: far more than
// probes, scrapes and operators open at once, far below the usual 1,024
// file descriptors per process.
const defaultHTTPMaxConns = 256

func newHTTPConnLimiter(ln net.Listener, max int) *httpConnLimiter {
	if max <= 0 {
		max = defaultHTTPMaxConns
	}
	return &httpConnLimiter{
		Listener: ln, max: max, conns: map[net.Conn]*httpConn{},
		changed: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

// Accept returns the next connection, once there is room for it.
func (l *httpConnLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	hc := &httpConn{Conn: c, l: l}
	hc.idleSince.Store(time.Now().UnixNano()) // no request yet
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			l.conns[hc] = hc
			l.mu.Unlock()
			return hc, nil
		}
		var oldest *httpConn
		for _, o := range l.conns {
			if t := o.idleSince.Load(); t != 0 && (oldest == nil || t < oldest.idleSince.Load()) {
				oldest = o
			}
		}
		if oldest != nil {
			delete(l.conns, oldest)
		}
		l.mu.Unlock()
		if oldest != nil {
			l.evicted.Add(1)
			oldest.Conn.Close() // net/http's reader fails and lets it go
			continue
		}
		select {
		case <-l.changed:
		case <-time.After(100 * time.Millisecond): // a state change the signal missed
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// Close stops Accept, including a wait for room.
func (l *httpConnLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState is the http.Server's ConnState: it marks connections idle and
// busy, and forgets closed ones.
func (l *httpConnLimiter) connState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn() // PEERBRIDGE_WEB_CONFIG_FILE's TLS wraps the limiter's conn
	}
	hc, ok := c.(*httpConn)
	if !ok {
		return
	}
	switch state {
	case http.StateNew, http.StateIdle:
		hc.idleSince.Store(time.Now().UnixNano())
		l.signal()
	case http.StateActive:
		hc.idleSince.Store(0)
	case http.StateClosed, http.StateHijacked:
		hc.forget()
	}
}

func (l *httpConnLimiter) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (c *httpConn) forget() {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
}

func (c *httpConn) Close() error {
	c.forget()
	return c.Conn.Close()
}

// open returns how many connections are open.
func (l *httpConnLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
