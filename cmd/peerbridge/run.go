package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/consulpub"
	"github.com/peerbridge/peerbridge/dnsserver"
)

// run serves DNS and HTTP and runs one loop per topology until ctx is done.
// Providers are built and everything listens before the first poll, so a
// bad address fails at once.
func (m *Main) run(ctx context.Context, cfg *config) error {
	log := newLogger(m.Stderr, cfg.logLevel, cfg.logFormat)
	log.Info("starting peerbridge", "version", buildVersion(), "config", cfg.logValue())

	cfg.dns.Logger = log.With("component", "dns")
	dns, err := dnsserver.New(cfg.dns)
	if err != nil {
		return err
	}
	publishers := []bridge.Publisher{dns}
	var consul *consulpub.Publisher
	if cfg.consul != nil {
		if consul, err = newConsulPublisher(cfg.consul, log); err != nil {
			return err
		}
		publishers = append(publishers, consul)
	}
	loops := make([]*bridge.Loop, len(cfg.topologies))
	for i, t := range cfg.topologies {
		source, err := t.newSource(log.With("topology", t.name, "provider", t.provider))
		if err != nil {
			return fmt.Errorf("topology %s: %w", t.name, err)
		}
		loops[i] = bridge.NewLoop(bridge.LoopConfig{
			Service:    t.spec(),
			Interval:   t.interval,
			Provider:   source,
			Publishers: publishers,
			Logger:     log,
		})
	}

	pc, ln, err := dnsserver.Listen(cfg.dnsAddr)
	if err != nil {
		return err
	}
	var httpLn net.Listener
	if cfg.httpAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			pc.Close()
			ln.Close()
			return fmt.Errorf("http listen: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return dns.Serve(gctx, pc, ln) })
	if consul != nil {
		// On the way out the entries stay: a restart adopts them.
		g.Go(func() error { return consul.Run(gctx) })
	}
	var httpAddr net.Addr
	if httpLn != nil {
		httpAddr = httpLn.Addr()
		g.Go(func() error { return serveHTTP(gctx, httpLn, newHTTPHandler(loops, dns, consul, time.Now)) })
	}
	for _, l := range loops {
		g.Go(func() error { return l.Run(gctx) })
	}
	log.Info("listening", "dns", pc.LocalAddr().String(), "http", fmt.Sprint(httpAddr), "zone", dns.Zone())
	if m.OnListen != nil {
		m.OnListen(pc.LocalAddr(), httpAddr)
	}

	err = g.Wait()
	log.Info("stopped")
	return err
}

func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
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

// newConsulPublisher builds the Consul client as consul/api reads its
// environment (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT, ...).
func newConsulPublisher(cfg *consulConfig, log *slog.Logger) (*consulpub.Publisher, error) {
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return consulpub.New(consulpub.Options{
		Client: client, Owner: cfg.owner, Tags: cfg.tags, Logger: log.With("component", "consul"),
	})
}
