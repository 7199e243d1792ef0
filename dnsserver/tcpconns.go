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

// DefaultTCPWriteTimeout bounds a write to a DNS TCP client when Config
// leaves it 0: ample for 32 KiB of a zone transfer to a secondary that
// reads, and a client that does not read holds its connection, its
// goroutine and what it was sent no longer than this.
const DefaultTCPWriteTimeout = 3 * time.Second

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
	max          int
	writeTimeout time.Duration
	stats        *stats
	log          *slog.Logger
	// sleep waits d or until done is closed; tests replace it.
	sleep func(d time.Duration, done <-chan struct{})

	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	done      chan struct{}
	closeOnce sync.Once

	// A stop's drain (drain): draining is set once drainIdle and drainEnd
	// are, and drained closed when the listener's queue is empty.
	draining    atomic.Bool
	drainIdle   time.Duration
	drainEnd    time.Time
	drained     chan struct{}
	drainedOnce sync.Once
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
		Listener: ln, max: max, writeTimeout: DefaultTCPWriteTimeout, stats: st, log: log, sleep: sleepOrDone,
		conns: map[*trackedConn]struct{}{}, done: make(chan struct{}), drained: make(chan struct{}),
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
			if l.draining.Load() {
				d := time.Now().Add(l.drainIdle)
				if d.After(l.drainEnd) {
					d = l.drainEnd
				}
				l.setDeadline(d)
			}
			return l.track(c), nil
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() && l.draining.Load() {
			// The queue is empty: miekg/dns must not see an error until
			// the shutdown that follows closes the listener.
			l.drainedOnce.Do(func() { close(l.drained) })
			<-l.done
			return nil, err
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

// drain accepts the connections queued on the listener, for miekg/dns to
// answer, until none came for idle or max has passed.
func (l *connLimiter) drain(idle, max time.Duration) {
	l.drainIdle, l.drainEnd = idle, time.Now().Add(max)
	l.draining.Store(true)
	if !l.setDeadline(time.Now().Add(idle)) {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-l.drained:
	case <-t.C:
	}
}

func (l *connLimiter) setDeadline(t time.Time) bool {
	d, ok := l.Listener.(interface{ SetDeadline(time.Time) error })
	return ok && d.SetDeadline(t) == nil
}

// awaitAnswered waits until every connection has been answered at least
// once, or until deadline: a connection accepted during a drain has its
// query in the socket, and the shutdown that follows would cut it off
// before miekg/dns reads it.
func (l *connLimiter) awaitAnswered(deadline time.Time) {
	for time.Now().Before(deadline) {
		pending := false
		l.mu.Lock()
		for c := range l.conns {
			if !c.wrote.Load() {
				pending = true
				break
			}
		}
		l.mu.Unlock()
		if !pending {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeAll closes every connection, for a stop that does not wait for
// them, and returns how many there were.
func (l *connLimiter) closeAll() int {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
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
	wrote   atomic.Bool  // an answer was sent
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

// Write gives up after the write timeout and closes the connection: a
// client that does not read, a zone transfer's above all, would otherwise
// hold its goroutine and what it was sent for ever, and a stop would wait
// for it.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.touch()
	c.wrote.Store(true)
	c.Conn.SetWriteDeadline(time.Now().Add(c.l.writeTimeout))
	n, err := c.Conn.Write(p)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.l.stats.tcpWriteTimeouts.Add(1)
		c.Close()
	}
	return n, err
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
