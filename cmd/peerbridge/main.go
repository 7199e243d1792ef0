// Command peerbridge polls platform APIs for the peers of a cluster and
// publishes them as records of its own authoritative DNS server.
//
// Usage: peerbridge [run|check|health|version|help]. Configuration comes from
// PEERBRIDGE_* environment variables; "peerbridge help" lists them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	ctx, stop := stopOnSignal(os.Stderr)
	defer stop()
	err := NewMain(os.Stdout, os.Stderr).Run(ctx, os.Args[1:])
	var cerr *configError
	switch {
	case err == nil:
	case errors.As(err, &cerr):
		fmt.Fprintln(os.Stderr, "peerbridge: invalid configuration:")
		for _, p := range cerr.problems {
			fmt.Fprintln(os.Stderr, "  "+p)
		}
		os.Exit(2)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "peerbridge:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "peerbridge:", err)
		os.Exit(1)
	}
}

// stopOnSignal returns a context that SIGINT, SIGTERM or SIGHUP cancel: a
// clean stop, DNS and HTTP closed and Consul entries kept. SIGHUP, which
// daemons often take as "reload", says so in a line of its own: the
// configuration is read at start only, so it takes a restart to apply a
// change, and Go's default for SIGHUP (exit without cleaning up) would
// look like a crash.
func stopOnSignal(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				fmt.Fprintln(stderr, "peerbridge: SIGHUP: stopping cleanly; the configuration is read only at start, restart to apply changes")
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// tokenTableFormat is envconfig's table without its introduction.
const tokenTableFormat = "KEY\tTYPE\tDEFAULT\tREQUIRED\tDESCRIPTION\n{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_required .}}\t{{usage_description .}}\n{{end}}"

var errUsage = errors.New("usage: peerbridge [run|check|health|version|help]")

// Main is the program, apart from the process: its output streams, and a
// hook that tells tests where the servers listen.
type Main struct {
	Stdout, Stderr io.Writer
	// OnListen, if set, is called with the DNS and HTTP addresses once
	// both listen (http is nil when HTTP is off).
	OnListen func(dns, http net.Addr)
}

// NewMain returns a Main writing to stdout and stderr.
func NewMain(stdout, stderr io.Writer) *Main {
	return &Main{Stdout: stdout, Stderr: stderr}
}

// Run runs the command named by args[0] (run when there is none) until ctx
// is done or it fails.
func (m *Main) Run(ctx context.Context, args []string) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	if len(args) > 1 {
		return fmt.Errorf("%w: %q takes no arguments", errUsage, cmd)
	}
	switch cmd {
	case "run":
		cfg, err := loadConfig()
		if err != nil {
			return err
		}
		return m.run(ctx, cfg)
	case "check":
		cfg, err := loadConfig()
		if err != nil {
			return err
		}
		return m.check(ctx, cfg)
	case "health":
		return m.health()
	case "version":
		_, err := fmt.Fprintln(m.Stdout, "peerbridge", buildVersion())
		return err
	case "help", "-h", "-help", "--help":
		return m.help()
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

func (m *Main) help() error {
	fmt.Fprint(m.Stdout, `peerbridge polls platform APIs for the peers of a cluster and serves them
as DNS records, so that every node finds its peers without a cloud token.

Commands:
  run      serve DNS and poll the providers (the default)
  check    validate the configuration, poll once, print what would be published
  health   ask a running peerbridge's /healthz (for container health checks)
  version  print the version
  help     print this help

With PEERBRIDGE_TOPOLOGIES=web,worker every topology variable below is also
read as PEERBRIDGE_WEB_<NAME>, PEERBRIDGE_WORKER_<NAME>: the per-topology
variable wins, the plain one is the default for every topology.

`)
	tw := tabwriter.NewWriter(m.Stdout, 1, 0, 2, ' ', 0)
	if err := envconfig.Usagef(envPrefix, newEnvSpec(), tw, envconfig.DefaultTableFormat); err != nil {
		return err
	}
	for _, p := range providers {
		if text := p.vendorHelp(); text != "" {
			fmt.Fprintf(tw, "\n%s\n", text)
		}
		if p.vendor != nil {
			fmt.Fprintln(tw)
			if err := envconfig.Usagef(p.vendor.prefix, p.vendor.spec, tw, tokenTableFormat); err != nil {
				return err
			}
		}
	}
	return tw.Flush()
}

// buildVersion is the version set at build time, else the module version
// or VCS revision Go recorded, else "dev".
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return "dev-" + s.Value[:min(12, len(s.Value))]
		}
	}
	return "dev"
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
