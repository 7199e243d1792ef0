package main

// The sockets: the DNS and HTTP listeners are opened, or taken over from
// systemd's socket activation (sd_listen_fds(3)), here.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peerbridge/peerbridge/dnsserver"
)

// Socket activation's names: LISTEN_FDNAMES, or, when the names are not
// these (one socket unit names all its sockets alike), this order.
const (
	fdDNSUDP = "dns-udp"
	fdDNSTCP = "dns-tcp"
	fdHTTP   = "http"
)

var fdOrder = []string{fdDNSUDP, fdDNSTCP, fdHTTP}

// listenFDsStart is the first file descriptor systemd passes.
const listenFDsStart = 3

// listen opens the DNS sockets and the HTTP listener (nil when HTTP is
// off), or takes those that systemd passed: inherited sockets keep their
// queue across a restart, so that a query sent while no process runs
// waits in the kernel for the next one.
func listen(cfg *config, log *slog.Logger) (*dnsserver.Listeners, net.Listener, error) {
	act, err := activated()
	if err != nil {
		return nil, nil, err
	}
	if act != nil {
		log.Info("socket activation", "dns_udp", len(act.udp), "dns_tcp", act.tcp != nil, "http", act.http != nil)
	}
	var ls *dnsserver.Listeners
	if act != nil && len(act.udp) > 0 {
		ls = &dnsserver.Listeners{UDP: act.udp, TCP: act.tcp, Inherited: true}
	} else if ls, err = dnsserver.Listen(cfg.dnsAddr); err != nil {
		act.close()
		return nil, nil, err
	}
	var httpLn net.Listener
	switch {
	case act != nil && act.http != nil:
		httpLn = act.http
		if cfg.httpAddr == "" {
			log.Warn("socket activation passed an http socket but PEERBRIDGE_HTTP_ADDR is empty: serving HTTP on it anyway")
		}
	case cfg.httpAddr != "":
		if httpLn, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			ls.Close()
			return nil, nil, fmt.Errorf("http listen: %w", err)
		}
	}
	if httpLn != nil {
		httpLn = newHTTPConnLimiter(httpLn, cfg.httpMaxConns)
	}
	return ls, httpLn, nil
}

// firstSetWait bounds how long DNS waits for every topology's first set
// before it answers: queries meanwhile wait in the kernel's queue.
const firstSetWait = time.Second

// awaitFirstSets returns once dns holds a set of each of n topologies, or
// after firstSetWait. During a restart the sockets are already there (a
// systemd socket, or a SO_REUSEPORT group that the kernel already spreads
// queries over), and a query answered before the first set would be
// answered without peers, which DNS clients such as libcluster take as
// "no nodes". A set comes within milliseconds from a static list, a saved
// set or Consul; an API poll that takes longer only delays DNS by the
// bound.
func awaitFirstSets(ctx context.Context, dns *dnsserver.Server, n int) {
	deadline := time.Now().Add(firstSetWait)
	for len(dns.Sets()) < n && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// activatedSockets are the sockets systemd passed.
type activatedSockets struct {
	udp  []*net.UDPConn
	tcp  net.Listener
	http net.Listener
}

func (a *activatedSockets) close() {
	if a == nil {
		return
	}
	for _, c := range a.udp {
		c.Close()
	}
	for _, l := range []net.Listener{a.tcp, a.http} {
		if l != nil {
			l.Close()
		}
	}
}

// activated returns the sockets passed by systemd's socket activation
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), nil without it, and unsets the
// variables so that no child process takes them for its own.
func activated() (*activatedSockets, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if pid == "" || fds == "" || pid != strconv.Itoa(os.Getpid()) {
		return nil, nil // not for this process
	}
	names := os.Getenv("LISTEN_FDNAMES")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q is not a number of file descriptors", fds)
	}
	if n == 0 {
		return nil, nil
	}
	roles, err := fdRoles(n, names)
	if err != nil {
		return nil, err
	}
	a := &activatedSockets{}
	var errs []error
	for i, role := range roles {
		fd := listenFDsStart + i
		syscall.CloseOnExec(fd)
		if err := a.take(fd, role); err != nil {
			errs = append(errs, fmt.Errorf("socket activation: fd %d (%s): %w", fd, role, err))
		}
	}
	switch {
	case len(errs) > 0:
	case len(a.udp) > 0 && a.tcp == nil:
		errs = append(errs, errors.New("socket activation: dns-udp passed without dns-tcp; pass both, or neither"))
	case len(a.udp) == 0 && a.tcp != nil:
		errs = append(errs, errors.New("socket activation: dns-tcp passed without dns-udp; pass both, or neither"))
	}
	if len(errs) > 0 {
		a.close()
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// fdRoles names the n file descriptors: by LISTEN_FDNAMES when every name
// is one of fdOrder's, else (no names, or one socket unit's name for all
// of them) in fdOrder's order.
func fdRoles(n int, names string) ([]string, error) {
	var list []string
	if names != "" {
		list = strings.Split(names, ":")
		if len(list) != n {
			return nil, fmt.Errorf("socket activation: LISTEN_FDNAMES has %d names for %d file descriptors", len(list), n)
		}
	}
	ours := 0
	for _, name := range list {
		if slices.Contains(fdOrder, name) {
			ours++
		}
	}
	switch {
	case len(list) > 0 && ours == len(list):
		return list, nil
	case ours > 0:
		return nil, fmt.Errorf("socket activation: LISTEN_FDNAMES=%q mixes %s with other names", names, strings.Join(fdOrder, ", "))
	case n > len(fdOrder):
		return nil, fmt.Errorf("socket activation: %d file descriptors without the names %s", n, strings.Join(fdOrder, ", "))
	}
	return fdOrder[:n], nil
}

// take wraps fd as the socket of role, which it must fit: a datagram
// socket for dns-udp, a listening stream socket for the others.
func (a *activatedSockets) take(fd int, role string) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	listening, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	switch {
	case role == fdDNSUDP && typ != unix.SOCK_DGRAM:
		return errors.New("not a UDP socket (ListenDatagram=)")
	case role != fdDNSUDP && (typ != unix.SOCK_STREAM || listening != 1):
		return errors.New("not a listening TCP socket (ListenStream=)")
	}
	f := os.NewFile(uintptr(fd), role)
	defer f.Close() // the net values hold copies
	if role == fdDNSUDP {
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return err
		}
		conn, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return fmt.Errorf("not a UDP socket (ListenDatagram=) but %T", pc)
		}
		a.udp = append(a.udp, conn)
		return nil
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return err
	}
	dst := &a.tcp
	if role == fdHTTP {
		dst = &a.http
	}
	if *dst != nil {
		ln.Close()
		return errors.New("passed twice")
	}
	*dst = ln
	return nil
}
