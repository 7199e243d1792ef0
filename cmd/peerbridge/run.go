package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/dnsserver"
)

// run serves DNS and HTTP and runs the topologies until ctx is done: for
// the life of the process, or with HA only while this replica leads.
// Providers are built and everything listens before the first poll, so a
// bad address fails at once.
func (m *Main) run(ctx context.Context, cfg *config) error {
	log := newLogger(m.Stderr, cfg.logLevel, cfg.logFormat)
	log.Info("starting peerbridge", "version", buildVersion(), "config", cfg.logValue())
	cfg.logWarnings(log)

	cfg.dns.Logger = log.With("component", "dns")
	dns, err := dnsserver.New(cfg.dns)
	if err != nil {
		return err
	}
	var client *api.Client
	if cfg.consul != nil {
		if client, err = api.NewClient(api.DefaultConfig()); err != nil {
			return fmt.Errorf("consul client: %w", err)
		}
	}
	st := &state{dns: dns, ha: cfg.ha != nil, topologies: topologyNames(cfg)}
	metrics := newMetrics(st, cfg.topologies)
	newTerm := func(fence consulpub.Fence) (*term, error) { return buildTerm(cfg, log, dns, client, metrics, fence) }
	first, err := newTerm(consulpub.Fence{}) // fail at start on anything a term cannot be built with
	if err != nil {
		return err
	}
	if err := checkNodeNames(ctx, cfg, log); err != nil {
		return err
	}
	st.term.Store(first)

	ls, err := dnsserver.Listen(cfg.dnsAddr)
	if err != nil {
		return err
	}
	var httpLn net.Listener
	if cfg.httpAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			ls.Close()
			return fmt.Errorf("http listen: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dns.Serve(gctx, ls) })
	var httpAddr net.Addr
	if httpLn != nil {
		httpAddr = httpLn.Addr()
		g.Go(func() error {
			return serveHTTP(gctx, httpLn, newHTTPServer(newHTTPHandler(st, metrics.registry, time.Now), log))
		})
	}
	if cfg.ha == nil {
		g.Go(func() error { return first.run(gctx) })
	} else {
		g.Go(func() error { return lead(gctx, cfg, log, client, dns, st, newTerm) })
	}
	log.Info("listening", "dns", ls.Addr().String(), "http", fmt.Sprint(httpAddr), "zone", dns.Zone())
	if m.OnListen != nil {
		m.OnListen(ls.Addr(), httpAddr)
	}

	err = g.Wait()
	log.Info("stopped")
	return err
}

// term is what a leader runs: a loop per topology and the Consul
// publisher. Without HA one term lasts the life of the process and
// publishes to DNS and Consul. With HA each leadership term starts
// afresh, publishes to Consul only, fenced by the term's session (DNS
// follows the catalog on every replica alike), so that nothing an earlier
// term held can overwrite what a newer leader wrote meanwhile.
type term struct {
	loops  []*bridge.Loop
	consul *consulpub.Publisher // nil when Consul is off
}

func buildTerm(cfg *config, log *slog.Logger, dns *dnsserver.Server, client *api.Client, m *metrics, fence consulpub.Fence) (*term, error) {
	t := &term{}
	var publishers []bridge.Publisher
	if fence.Session == "" {
		publishers = append(publishers, dns)
	}
	if cfg.consul != nil {
		var err error
		t.consul, err = consulpub.New(consulpub.Options{
			Client: client, Owner: cfg.consul.owner, Tags: cfg.consul.tags, Fence: fence, Logger: log.With("component", "consul"),
		})
		if err != nil {
			return nil, err
		}
		publishers = append(publishers, t.consul)
	}
	for _, top := range cfg.topologies {
		source, err := top.newSource(log.With("topology", top.name, "provider", top.provider))
		if err != nil {
			return nil, fmt.Errorf("topology %s: %w", top.name, err)
		}
		t.loops = append(t.loops, bridge.NewLoop(bridge.LoopConfig{
			Service: top.spec(), Interval: top.interval, Budget: top.pacer(), Provider: source, Checker: top.checker,
			Publishers: publishers, Logger: log, Observer: m.observer(top.name, top.provider),
		}))
	}
	return t, nil
}

// run runs the loops and the publisher until ctx is done. On the way out
// Consul entries stay: a restart, or the next leader, adopts them.
func (t *term) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if t.consul != nil {
		g.Go(func() error { return t.consul.Run(gctx) })
	}
	for _, l := range t.loops {
		g.Go(func() error { return l.Run(gctx) })
	}
	return g.Wait()
}

// lead serves DNS from what the leader wrote to Consul, on every replica,
// and takes part in the election: the leader runs a term.
func lead(ctx context.Context, cfg *config, log *slog.Logger, client *api.Client, dns *dnsserver.Server,
	st *state, newTerm func(consulpub.Fence) (*term, error)) error {
	services := make([]bridge.Service, len(cfg.topologies))
	for i, t := range cfg.topologies {
		services[i] = t.spec()
	}
	leader := func(ctx context.Context, fence consulpub.Fence) {
		t, err := newTerm(fence)
		if err != nil {
			log.Error("cannot lead", "error", err)
			<-ctx.Done()
			return
		}
		st.term.Store(t)
		if err := t.run(ctx); err != nil {
			log.Error("leader stopped", "error", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		consulpub.Follow(gctx, consulpub.FollowOptions{
			Client: client, Owner: cfg.consul.owner, StampKey: consulpub.StampKey(cfg.ha.key), Services: services,
			Zone: dns, Ready: st.followerAnswered, Logger: log.With("component", "follow"),
		})
		return nil
	})
	g.Go(func() error {
		return consulpub.Lead(gctx, consulpub.ElectionOptions{
			Client: client, Key: cfg.ha.key, CheckTTL: cfg.ha.checkTTL, LockDelay: cfg.ha.lockDelay,
			RenewDeadline: cfg.ha.renewDeadline, Logger: log.With("component", "election"),
		}, leader, st.setLeader)
	})
	return g.Wait()
}

// state is what the HTTP endpoints read: the DNS server, the current term,
// and with HA this replica's role.
type state struct {
	dns        *dnsserver.Server
	ha         bool
	topologies []string
	term       atomic.Pointer[term]
	leading    atomic.Bool
	changes    atomic.Int64

	mu       sync.Mutex
	answered map[string]bool // topologies a follower's watch has answered for
}

func topologyNames(cfg *config) []string {
	names := make([]string, len(cfg.topologies))
	for i, t := range cfg.topologies {
		names[i] = t.name
	}
	return names
}

func (s *state) setLeader(leading bool) {
	if s.leading.Swap(leading) != leading {
		s.changes.Add(1)
	}
}

func (s *state) followerAnswered(topology string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answered == nil {
		s.answered = map[string]bool{}
	}
	s.answered[topology] = true
}

// role is what a replica does.
type role string

const (
	roleSingle   role = "single"   // no HA: polls, writes and serves alone
	roleLeader   role = "leader"   // polls and writes; serves DNS from the catalog
	roleFollower role = "follower" // serves DNS from the catalog
)

func (s *state) role() role {
	switch {
	case !s.ha:
		return roleSingle
	case s.leading.Load():
		return roleLeader
	default:
		return roleFollower
	}
}

// notReady returns why the replica is not ready, if it is not: with HA
// every replica needs its watch of the catalog to have served every
// topology, and a leader, like a single bridge, a recent complete
// discovery of every topology.
func (s *state) notReady(now time.Time) []string {
	var reasons []string
	if s.ha {
		s.mu.Lock()
		for _, t := range s.topologies {
			if !s.answered[t] {
				reasons = append(reasons, fmt.Sprintf("topology %s: no complete answer from Consul yet", t))
			}
		}
		s.mu.Unlock()
		if s.role() == roleFollower {
			return reasons
		}
	}
	for _, l := range s.term.Load().loops {
		if err := l.Status().Ready(now); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	return reasons
}

// loops returns the current term's loops when this replica runs them.
func (s *state) loops() []*bridge.Loop {
	if s.role() == roleFollower {
		return nil
	}
	return s.term.Load().loops
}

func (s *state) consul() *consulpub.Publisher {
	if s.role() == roleFollower {
		return nil
	}
	return s.term.Load().consul
}

// newHTTPServer serves h with timeouts, so that no client holds a
// connection or a goroutine for ever, and with net/http's own error lines
// going through log, in its format.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A scrape of /metrics or /status with many peers takes well under
		// this; a client that stops reading does not keep it.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
		ErrorLog:     slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
}

func serveHTTP(ctx context.Context, ln net.Listener, srv *http.Server) error {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

func (t topology) spec() bridge.Service {
	return bridge.Service{
		Topology:     t.name,
		Name:         t.service,
		Provider:     t.provider,
		Port:         t.port,
		PortName:     t.portName,
		NodeBasename: t.nodeBasename,
	}
}
