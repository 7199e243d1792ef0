// Package dnsserver is peerbridge's embedded authoritative DNS server. It
// publishes every topology's peers as A, AAAA, SRV, TXT and PTR records of
// one zone, from an immutable Snapshot that each change replaces whole, so
// that queries take no lock and always see one consistent peer set.
package dnsserver

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"github.com/peerbridge/peerbridge/bridge"
)

// Config configures the zone.
type Config struct {
	// Zone is the domain the server is authoritative for.
	Zone string
	// TTL is the TTL of every record.
	TTL time.Duration
	// NegativeTTL is how long resolvers may cache NXDOMAIN and NODATA.
	NegativeTTL time.Duration
	// MaxTCPConns caps the DNS TCP connections open at once; at the cap
	// the connection idle the longest is closed. 0 means
	// DefaultMaxTCPConns.
	MaxTCPConns int
	// TCPWriteTimeout bounds each write to a TCP client, a zone transfer's
	// messages included: a client that does not read is closed after it.
	// 0 means DefaultTCPWriteTimeout.
	TCPWriteTimeout time.Duration
	// Logger receives the server's events; nil discards them.
	Logger *slog.Logger
	// NS are the apex name servers, the first the SOA's MNAME; empty is
	// ns.<zone>.
	NS []NameServer
	// Transfer configures zone transfers and NOTIFY (xfr.go).
	Transfer Transfer
	// RateLimit limits the UDP answers to each client network (rrl.go).
	RateLimit RateLimit
	// Services are the configured topologies' service names. Until a set
	// of one is published, its names answer SERVFAIL: an NXDOMAIN or an
	// empty answer would be cached as "no such service" (RFC 2308) and
	// would stop a serve-stale cache (RFC 8767) from keeping its answer.
	Services []string
}

// Server answers queries for the zone and is a bridge.Publisher.
type Server struct {
	cfg          zoneConfig
	maxTCP       int
	writeTimeout time.Duration
	log          *slog.Logger
	snap         atomic.Pointer[Snapshot]
	now          func() time.Time

	mu      sync.Mutex // serialises Publish; queries never take it
	sets    map[string]bridge.Set
	gens    map[string]uint64 // each set's generation, from lastGen
	lastGen uint64
	serial  uint32
	adopted bool // PublishSerial has set the serial
	// built counts the batches of pending sets taken into a snapshot.
	built uint64

	// pending holds the sets given to Publish and not yet built, and
	// taken how many batches have been taken from it, so that Publish
	// calls that wait for the build lock together share one build (see
	// Publish). pendingMu is only held for map operations.
	pendingMu sync.Mutex
	pending   map[string]bridge.Set
	taken     uint64

	stats stats
	xfr   *xfr
	rrl   *limiter // nil: no rate limit
	// tcpTruncLogged is the snapshot for which an answer truncated over
	// TCP was last logged.
	tcpTruncLogged atomic.Pointer[Snapshot]
	long           longNames
	// clientLog limits the lines clients can cause (ratelog.go).
	clientLog *rateLog
}

// New returns a server with an empty zone: the apex answers, every service
// is NXDOMAIN until its first set is published.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	zone, _ := CanonicalZone(cfg.Zone)
	ttl, negTTL := uint32(cfg.TTL/time.Second), uint32(cfg.NegativeTTL/time.Second)
	ns, err := nameServers(zone, cfg.NS)
	if err != nil {
		return nil, err
	}
	maxTCP := cmp.Or(cfg.MaxTCPConns, DefaultMaxTCPConns)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:          zoneConfig{zone: zone, ttl: ttl, negTTL: negTTL, ns: ns, services: cfg.Services},
		maxTCP:       maxTCP,
		writeTimeout: cmp.Or(max(cfg.TCPWriteTimeout, 0), DefaultTCPWriteTimeout),
		log:          log,
		now:          time.Now,
		sets:         map[string]bridge.Set{},
		gens:         map[string]uint64{},
		xfr:          newXfr(cfg.Transfer),
		rrl:          newLimiter(cfg.RateLimit),

		clientLog: newRateLog(log),
	}
	s.serial = bridge.NextSerial(0, s.now())
	s.snap.Store(build(s.cfg, s.serial, nil, nil))
	return s, nil
}

// Restore serves sets, saved by an earlier run, at once (before any
// Publish) and makes every serial served from now on greater than
// serial, the last one that run served, so that the serial never goes
// back across a restart: secondaries holding it would otherwise take the
// zone for current (RFC 1982). The sets must be normalized and are kept,
// read-only.
func (s *Server) Restore(serial uint32, sets ...bridge.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range sets {
		s.store(set)
	}
	if bridge.CompareSerial(serial, s.serial) >= 0 {
		s.serial = bridge.NextSerial(serial, s.now())
	} else if len(sets) > 0 {
		s.serial = bridge.NextSerial(s.serial, s.now())
	}
	s.rebuild()
	s.log.Debug("dns records restored", "topologies", len(sets), "serial", s.serial)
}

// Zone returns the zone the server is authoritative for.
func (s *Server) Zone() string { return s.cfg.zone }

// Snapshot returns the records served now.
func (s *Server) Snapshot() *Snapshot { return s.snap.Load() }

// Publish replaces the records of set's topology: they are served when it
// returns. A set equal to the one published changes nothing, not even the
// serial. The set must be normalized and is kept, read-only.
//
// Publish calls that meet share one build: each puts its set in pending,
// and whichever holds the build lock next takes every pending set into
// one snapshot, so that the others, finding their set built meanwhile,
// return at once. A snapshot costs time in proportion to the topologies
// (their parts are taken over, but the zone's maps are made anew), so one
// build per topology made a start with thousands of topologies, all
// publishing at once, quadratic: 3,000 took 9 s and 10,000 minutes.
func (s *Server) Publish(_ context.Context, set bridge.Set) error {
	s.pendingMu.Lock()
	if s.pending == nil {
		s.pending = map[string]bridge.Set{}
	}
	s.pending[set.Service.Topology] = set // a newer set of the topology replaces one not built yet
	batch := s.taken                      // the batch that will hold set
	s.pendingMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.built > batch {
		return nil // built by another Publish meanwhile
	}
	s.pendingMu.Lock()
	sets := s.pending
	s.pending = nil
	s.taken++
	s.pendingMu.Unlock()
	s.built++

	var changed []string
	for t, set := range sets {
		if old, ok := s.sets[t]; ok && old.Equal(set) {
			continue
		}
		s.store(set)
		changed = append(changed, t)
	}
	if len(changed) == 0 {
		return nil
	}
	s.serial = bridge.NextSerial(s.serial, s.now())
	s.rebuild()
	if len(changed) == 1 {
		s.log.Debug("dns records updated", "topology", changed[0], "serial", s.serial)
	} else {
		s.log.Debug("dns records updated", "topologies", len(changed), "serial", s.serial)
	}
	return nil
}

// store keeps set under a new generation, by which rebuild knows the
// topologies whose records it can take over whole. s.mu must be held.
func (s *Server) store(set bridge.Set) {
	s.lastGen++
	s.sets[set.Service.Topology] = set
	s.gens[set.Service.Topology] = s.lastGen
}

// rebuild builds the snapshot of s.sets under s.serial, from the current
// one where records did not change, and serves it. s.mu must be held.
func (s *Server) rebuild() {
	snap := buildGen(s.cfg, s.serial, slices.Collect(maps.Values(s.sets)), s.gens, s.snap.Load())
	s.long.note(s.log, snap.tooLong)
	prev := s.snap.Swap(snap)
	s.xfr.changed(prev, snap) // IXFR history, NOTIFY
}

// PublishSerial replaces the records of the sets' topologies at once and
// serves them under serial, which the caller derives from what replicas
// share (see consulpub.Stamp), so that replicas serving the same records
// serve the same serial. The same sets under the same serial change
// nothing. The serial must grow (RFC 1982); one that does not, for records
// that changed, is replaced by the next one, so that secondaries still see
// the change. The server's first serial, taken before anything was
// published, does not count: the first call adopts serial whatever it is.
func (s *Server) PublishSerial(_ context.Context, serial uint32, sets ...bridge.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, set := range sets {
		if old, ok := s.sets[set.Service.Topology]; !ok || !old.Equal(set) {
			changed = true
		}
	}
	switch {
	case !s.adopted || bridge.CompareSerial(serial, s.serial) > 0:
		// The caller's serial.
	case !changed:
		return nil
	default:
		s.log.Warn("dns serial does not grow: using the next one", "given", serial, "current", s.serial)
		serial = s.serial + 1
	}
	for _, set := range sets {
		s.store(set)
	}
	s.adopted = true
	s.serial = serial
	s.rebuild()
	s.log.Debug("dns records updated", "topologies", len(sets), "serial", s.serial)
	return nil
}

// Sets returns the sets published, by topology. They must not be modified.
func (s *Server) Sets() map[string]bridge.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.sets)
}

// ServeDNS answers one query from the current snapshot.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if s.serveXFR(w, req) { // zone transfers, TSIG-signed queries
		return
	}
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	snap := s.snap.Load()
	if tcp && s.fastTCP(w, snap, req) {
		return
	}
	m := snap.answer(req, tcp)
	var qtype uint16
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.stats.count(tcp, qtype, m.Rcode, m.Truncated)
	if tcp && m.Truncated {
		s.truncatedOverTCP(snap, req, m)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns reply not sent", "remote", w.RemoteAddr().String(), "error", err)
	}
}

// tcpBuf is fastTCP's room: the query packed again and its answer.
type tcpBuf struct {
	query [512]byte
	out   [dns.MaxMsgSize]byte
}

var tcpBufs = sync.Pool{New: func() any { return new(tcpBuf) }}

// fastTCP answers req over TCP from the snapshot's packed answers, as the
// UDP loop does, and reports whether it did; false leaves req to the full
// path. miekg/dns has unpacked the query already, and packing it again
// costs little beside what it spares: packing an answer of many records,
// most of a TCP query's CPU otherwise (SRV for 100 peers: 200 records).
func (s *Server) fastTCP(w dns.ResponseWriter, snap *Snapshot, req *dns.Msg) bool {
	if len(req.Question) != 1 {
		return false
	}
	b := tcpBufs.Get().(*tcpBuf)
	defer tcpBufs.Put(b)
	wire, err := req.PackBuffer(b.query[:])
	if err != nil {
		return false
	}
	n, qtype := snap.fastAnswer(wire, b.out[:], true)
	if n == 0 {
		return false
	}
	s.stats.count(true, qtype, dns.RcodeSuccess, false)
	if _, err := w.Write(b.out[:n]); err != nil {
		s.log.Debug("dns reply not sent", "remote", w.RemoteAddr().String(), "error", err)
	}
	return true
}

// Serve answers queries on l until ctx is done, then stops and returns
// nil within stopTimeout, whatever clients do. Sockets of its own are
// drained first: what the kernel queued on them before the stop is
// answered, while a new process beside this one (SO_REUSEPORT) takes the
// new queries. Inherited sockets (Listeners.Inherited) keep their queue for
// the next process. UDP is answered by the server's own loops (fast path
// first), TCP by miekg/dns's server.
func (s *Server) Serve(ctx context.Context, l *Listeners) error {
	lim := newConnLimiter(l.TCP, s.maxTCP, &s.stats, s.log)
	lim.writeTimeout = s.writeTimeout
	var udpStop atomic.Int32
	var udpLoops sync.WaitGroup
	g, gctx := errgroup.WithContext(ctx)
	for _, conn := range l.UDP {
		udpLoops.Add(1)
		g.Go(func() error {
			defer udpLoops.Done()
			return s.serveUDP(conn, &udpStop)
		})
	}
	g.Go(func() error { return s.notifyLoop(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		s.stopUDP(l, &udpStop, &udpLoops)
		return nil
	})
	g.Go(func() error {
		return serveUntil(gctx, &dns.Server{
			Listener:      lim,
			Handler:       s,
			MsgAcceptFunc: acceptQuery,
			ReadTimeout:   2 * time.Second,
			// Keep a connection as long as the client does (RFC 7766): a
			// client fetching large answers would otherwise reconnect every
			// 128 queries. Idle connections still close after 8s.
			MaxTCPQueries: -1,
			TsigSecret:    s.xfr.secret, // verifies signed requests, signs their replies
		}, lim, !l.Inherited, s.log)
	})
	return g.Wait()
}

// How a stop spends its time, at most about stopTimeout in all: UDP and
// TCP stop side by side.
const (
	// udpDrainMax bounds the UDP drain: a detached socket gets nothing
	// new, so only a full receive buffer takes long.
	udpDrainMax = time.Second
	// tcpDrainIdle and tcpDrainMax bound accepting the connections queued
	// on the listener: until none came for tcpDrainIdle, at most
	// tcpDrainMax (a listener of a SO_REUSEPORT group keeps getting its
	// share of new connections until it closes).
	tcpDrainIdle = 50 * time.Millisecond
	tcpDrainMax  = 300 * time.Millisecond
	// tcpStopGrace is how long queries and transfers under way may take to
	// finish before their connections are closed.
	tcpStopGrace = 700 * time.Millisecond
	// stopTimeout is what a stop takes at most, about.
	stopTimeout = tcpDrainMax + tcpStopGrace + time.Second
)

// stopUDP ends the UDP loops: draining the sockets of their own, leaving
// inherited ones' queues for the next process.
func (s *Server) stopUDP(l *Listeners, stop *atomic.Int32, loops *sync.WaitGroup) {
	if l.Inherited {
		stop.Store(udpLeaving)
		for _, c := range l.UDP {
			c.SetReadDeadline(time.Unix(1, 0)) // ends a read under way
		}
	} else {
		stop.Store(udpDraining)
		for _, c := range l.UDP {
			if err := detachUDP(c); err != nil {
				s.log.Warn("dns udp socket not detached: queries arriving during the stop may go unanswered", "error", err)
			}
			c.SetReadDeadline(time.Now().Add(udpDrainIdle))
		}
	}
	done := make(chan struct{})
	go func() { loops.Wait(); close(done) }()
	t := time.NewTimer(udpDrainMax)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("dns udp sockets still busy at the end of the drain: closing them")
	}
	for _, c := range l.UDP {
		c.Close()
	}
	<-done
}

// serveUntil runs srv until ctx is done, then drains lim when asked and
// shuts srv down, closing the connections that outlast tcpStopGrace. It
// waits for srv to have started before shutting it down: a shutdown that
// comes first is lost, and the server would then run forever.
func serveUntil(ctx context.Context, srv *dns.Server, lim *connLimiter, drain bool, log *slog.Logger) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()

	select {
	case err := <-done:
		return fmt.Errorf("dns server: %w", err)
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return fmt.Errorf("dns server: %w", err)
	case <-started:
	}
	if drain {
		lim.drain(tcpDrainIdle, tcpDrainMax)
	}
	lim.awaitAnswered(time.Now().Add(tcpStopGrace / 2))
	sctx, cancel := context.WithTimeout(context.Background(), tcpStopGrace)
	defer cancel()
	if err := srv.ShutdownContext(sctx); err != nil {
		// A client that does not read its answer, or a transfer under
		// way: a stop does not wait for them.
		n := lim.closeAll()
		log.Info("dns tcp connections closed at stop", "connections", n)
	}
	<-done // prompt: every connection is closed or idle
	return nil
}

// truncatedOverTCP logs, once per snapshot, that an answer did not fit
// even in 64 KiB: the client gets only part of the RRset, which no retry
// can mend. The metric counts every such answer.
func (s *Server) truncatedOverTCP(snap *Snapshot, req, m *dns.Msg) {
	if s.tcpTruncLogged.Swap(snap) == snap {
		return
	}
	q := req.Question[0]
	s.log.Warn("dns answer too large even for TCP: sent truncated",
		"name", q.Name, "qtype", dns.TypeToString[q.Qtype], "records_sent", len(m.Answer), "serial", snap.serial)
}

// acceptQuery is miekg/dns's default filter, except that responses are
// dropped first and NOTIFY, which the default lets through, is not
// implemented here. The UDP paths use it too.
func acceptQuery(h dns.Header) dns.MsgAcceptAction {
	// Never answer a response, whatever its opcode: a forged one from this
	// server's own address (or a replica's) would loop between them.
	if h.Bits&flagQR != 0 {
		return dns.MsgIgnore
	}
	if opcode(h) == dns.OpcodeNotify {
		return dns.MsgRejectNotImplemented
	}
	return dns.DefaultMsgAcceptFunc(h)
}
