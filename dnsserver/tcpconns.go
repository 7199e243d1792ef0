package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxTCPConns is how many DNS TCP connections are open at most when
// Config leaves it 0. Each costs a goroutine, a file descriptor and a few
// KiB; 512 stays far below the usual limit of 1,024 descriptors per
// process while serving many more clients than retry over TCP at once.
const DefaultMaxTCPConns = 512

// maxTCPConnsLimit bounds the setting: more would only move the limit to
// the process's file descriptors.
const maxTCPConnsLimit = 1 << 20

// Accept errors back off from acceptBackoffMin, doubling up to
// acceptBackoffMax, so that running out of file descriptors (EMFILE)
// does not turn the accept loop into a busy loop.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// connLimiter is the TCP listener miekg/dns serves, which has no
// connection limit of its own: at the cap a new connection closes the one
// idle the longest, so that a client holding connections open cannot lock
// others out. It never hands miekg/dns an error it would retry at once.
type connLimiter struct {
	net.Listener
	max   int
	stats *stats
	log   *slog.Logger
	// sleep waits d or until done is closed; tests replace it.
	sleep func(d time.Duration, done <-chan struct{})

	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	done      chan struct{}
	closeOnce sync.Once
}

// CheckMaxTCPConns validates Config.MaxTCPConns: 0 (the default) or 1 to
// 1,048,576.
func CheckMaxTCPConns(n int) error {
	if n < 0 || n > maxTCPConnsLimit {
		return fmt.Errorf("%d is not between 1 and %d (0: %d)", n, maxTCPConnsLimit, DefaultMaxTCPConns)
	}
	return nil
}

func newConnLimiter(ln net.Listener, max int, st *stats, log *slog.Logger) *connLimiter {
	return &connLimiter{
		Listener: ln, max: max, stats: st, log: log, sleep: sleepOrDone,
		conns: map[*trackedConn]struct{}{}, done: make(chan struct{}),
	}
}

func sleepOrDone(d time.Duration, done <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// Accept returns the next connection, closing the longest idle one when
// the cap is reached, and backs off on errors until the listener closes.
func (l *connLimiter) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return l.track(c), nil
		}
		select {
		case <-l.done:
			return nil, err
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if backoff == 0 {
			l.log.Warn("dns tcp accept failed: backing off", "error", err)
		}
		backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
		l.sleep(backoff, l.done)
	}
}

func (l *connLimiter) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, l: l}
	tc.touch()
	var evict *trackedConn
	l.mu.Lock()
	if len(l.conns) >= l.max {
		for o := range l.conns {
			if evict == nil || o.lastUse.Load() < evict.lastUse.Load() {
				evict = o
			}
		}
		delete(l.conns, evict)
	}
	l.conns[tc] = struct{}{}
	l.stats.tcpOpen.Store(int64(len(l.conns)))
	l.mu.Unlock()
	if evict != nil {
		l.stats.tcpEvicted.Add(1)
		evict.Conn.Close() // its reader fails and miekg/dns lets it go
	}
	return tc
}

func (l *connLimiter) forget(tc *trackedConn) {
	l.mu.Lock()
	delete(l.conns, tc)
	l.stats.tcpOpen.Store(int64(len(l.conns)))
	l.mu.Unlock()
}

// Close stops Accept, including its back-off.
func (l *connLimiter) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// trackedConn records when it last carried data, for the limiter to pick
// the connection idle the longest.
type trackedConn struct {
	net.Conn
	l       *connLimiter
	lastUse atomic.Int64 // monotonic nanoseconds since start
	once    sync.Once
}

var monoStart = time.Now()

func (c *trackedConn) touch() { c.lastUse.Store(int64(time.Since(monoStart))) }

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.touch()
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}

// tcpConns returns how many DNS TCP connections are open, and how many
// were closed to make room for a new one at the cap.
func (s *Server) tcpConns() (open int64, evicted uint64) {
	return s.stats.tcpOpen.Load(), s.stats.tcpEvicted.Load()
}
