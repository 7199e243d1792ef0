package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
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
	saved, err := restore(cfg, log, dns)
	if err != nil {
		return err
	}
	warmFromConsul(ctx, cfg, log, client, dns, saved)
	st := &state{dns: dns, ha: cfg.ha != nil, topologies: topologyNames(cfg)}
	a := &app{cfg: cfg, log: log, dns: dns, client: client, metrics: newMetrics(st, cfg.topologies), st: st, saved: saved}
	first, err := a.buildTerm(consulpub.Fence{}) // fail at start on anything a term cannot be built with
	if err != nil && cfg.ha != nil {
		// Another replica may lead: this one serves the catalog, and
		// gives up the lock whenever it wins it and still cannot build.
		log.Error("cannot build a term, following only", "error", err)
		first, err = &term{}, nil
	}
	if err != nil {
		return err
	}
	if err := checkNodeNames(ctx, cfg, log); err != nil {
		return err
	}
	st.term.Store(first)

	ls, httpLn, err := listen(cfg, log) // listen.go
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		awaitFirstSets(gctx, dns, len(cfg.topologies)) // listen.go
		return dns.Serve(gctx, ls)
	})
	if saved.store != nil {
		g.Go(func() error { return saved.store.Run(gctx) })
	}
	var httpAddr net.Addr
	if httpLn != nil {
		httpAddr = httpLn.Addr()
		g.Go(func() error {
			return serveHTTP(gctx, httpLn, newHTTPServer(newHTTPHandler(st, a.metrics.registry, time.Now), log), a.cfg.web)
		})
	}
	if cfg.ha == nil {
		g.Go(func() error { return first.run(gctx) })
	} else {
		for name := range saved.seeds {
			st.followerAnswered(name) // served from the state file until the catalog answers
		}
		g.Go(func() error { return a.lead(gctx) })
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

// app is one run's parts, which every term and the election share.
type app struct {
	cfg     *config
	log     *slog.Logger
	dns     *dnsserver.Server
	client  *api.Client // nil when Consul is off
	metrics *metrics
	st      *state
	// saved is what the state file held at start, and its writer.
	saved *savedState
}

// buildTerm builds a term; fence is the leader's session, empty without
// HA.
func (a *app) buildTerm(fence consulpub.Fence) (*term, error) {
	cfg, log, saved := a.cfg, a.log, a.saved
	t := &term{}
	var publishers []bridge.Publisher
	if fence.Session == "" {
		publishers = append(publishers, a.dns)
		if saved.store != nil {
			publishers = append(publishers, saved.store)
		}
	}
	if cfg.consul != nil {
		var err error
		opts := consulpub.Options{
			Client: a.client, Owner: cfg.consul.owner, Tags: cfg.consul.tags, Fence: fence, Logger: log.With("component", "consul"),
		}
		if fence.Session != "" {
			opts.MaxRefusals = haMaxRefusals
		}
		t.consul, err = consulpub.New(opts)
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
			Publishers: publishers, Logger: log, Observer: a.metrics.observer(top.name, top.provider), RemoveAfter: top.removeAfter,
			Seed: saved.seeds[top.name],
		}))
	}
	return t, nil
}

// haMaxRefusals is how many syncs in a row Consul may refuse a leader
// (its ACL token may not write) before it gives up the lock.
const haMaxRefusals = 3

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
func (a *app) lead(ctx context.Context) error {
	cfg, log, client, st := a.cfg, a.log, a.client, a.st
	services := make([]bridge.Service, len(cfg.topologies))
	for i, t := range cfg.topologies {
		services[i] = t.spec()
	}
	leader := func(ctx context.Context, fence consulpub.Fence) {
		// Returning before ctx is done gives up the lock (consulpub.Lead),
		// so that a replica that can lead does.
		t, err := a.buildTerm(fence)
		if err != nil {
			log.Error("cannot lead, giving up the leader lock", "error", err)
			return
		}
		st.term.Store(t)
		if err := t.run(ctx); err != nil {
			log.Error("leader stopped, giving up the leader lock", "error", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		consulpub.Follow(gctx, consulpub.FollowOptions{
			Client: client, Owner: cfg.consul.owner, StampKey: consulpub.StampKey(cfg.ha.key), Services: services,
			Zone: savingZone{a.dns, a.saved.store}, Ready: st.followerAnswered, Logger: log.With("component", "follow"),
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

func (t topology) spec() bridge.Service {
	port := t.port
	if p, ok := lookupProvider(t.provider); ok && p.ContainerPort {
		// The provider took PEERBRIDGE_PORT as the containers' port and
		// gives each peer the port it is mapped to.
		port = 0
	}
	return bridge.Service{
		Topology:     t.name,
		Name:         t.service,
		Provider:     t.provider,
		Port:         port,
		PortName:     t.portName,
		NodeBasename: t.nodeBasename,
	}
}

// maxLoggedTopologies is how many topologies the start-up line lists.
const maxLoggedTopologies = 20

// logValue is the effective configuration for the start-up log line.
// Credentials are never part of it: only where the token came from.
func (c *config) logValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("zone", c.dns.Zone),
		slog.String("dns_addr", c.dnsAddr),
		slog.String("http_addr", c.httpAddr),
		slog.Duration("ttl", c.dns.TTL),
		slog.Duration("negative_ttl", c.dns.NegativeTTL),
		slog.Any("ns", c.dns.NS),
		slog.Any("transfer", c.dns.Transfer), // the TSIG key's name, never its secret
	}
	if c.ha != nil {
		attrs = append(attrs, slog.Group("ha", "key", c.ha.key, "check_ttl", c.ha.checkTTL, "lock_delay", c.ha.lockDelay, "renew_deadline", c.ha.renewDeadline))
	}
	if c.consul != nil {
		// Where the token comes from, as consul/api picks it; never the token.
		tokenFrom := ""
		for _, v := range []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE"} {
			if os.Getenv(v) != "" {
				tokenFrom = v
				break
			}
		}
		attrs = append(attrs, slog.Group("consul",
			"addr", consulpub.RedactAddr(os.Getenv("CONSUL_HTTP_ADDR")), "token_set", tokenFrom != "", "token_from", tokenFrom,
			"owner", c.consul.owner, "tags", c.consul.tags))
	}
	// Thousands of topologies made the first line megabytes long: the
	// first few are listed, the rest counted (/status lists them all).
	shown := c.topologies[:min(len(c.topologies), maxLoggedTopologies)]
	if more := len(c.topologies) - len(shown); more > 0 {
		attrs = append(attrs, slog.Int("topologies", len(c.topologies)), slog.Int("topologies_not_listed", more))
	}
	for _, t := range shown {
		attrs = append(attrs, slog.Group("topology."+t.name, append([]any{
			"service", t.service, "provider", t.provider, "port", t.port,
			"port_name", t.portName, "node_basename", t.nodeBasename, "poll_interval", t.intervalText(),
		}, t.details...)...))
	}
	return slog.GroupValue(attrs...)
}

// logWarnings logs what loadConfig found doubtful.
func (c *config) logWarnings(log *slog.Logger) {
	for _, w := range c.warnings {
		log.Warn("configuration: "+w.msg, "variable", w.variable)
	}
}
