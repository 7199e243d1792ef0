package dnsserver

// The sockets: every UDP socket and the TCP listener are opened here, and
// nowhere else. reusePort, which differs by platform, is in
// listen_linux.go and listen_other.go.

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
)

// Listen opens the UDP sockets (one per core where SO_REUSEPORT allows)
// and the TCP listener for addr. With port 0 all get the same free port:
// the UDP port is picked first, and picked again while its TCP twin is
// taken.
//
// Every socket sets SO_REUSEPORT, the TCP listener too, so that a new
// process can open the same address beside a running one and take over
// while the old one drains (Serve): a restart that refuses no query. With
// port 0 the TCP listener binds its port exclusively first: a port picked
// for UDP must not join another process's TCP listener that holds it.
func Listen(addr string) (*Listeners, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dns address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		udp, err := listenUDP(addr, runtime.GOMAXPROCS(0))
		if err != nil {
			return nil, fmt.Errorf("dns listen udp: %w", err)
		}
		ln, err := listenTCP(net.JoinHostPort(host, portOf(udp[0].LocalAddr())), port == "0")
		if err == nil {
			return &Listeners{UDP: udp, TCP: ln}, nil
		}
		for _, c := range udp {
			c.Close()
		}
		if port != "0" || attempt == 10 {
			return nil, fmt.Errorf("dns listen tcp: %w", err)
		}
	}
}

// Listeners are the sockets the server answers on: several UDP sockets
// sharing one port where SO_REUSEPORT allows, and one TCP listener.
type Listeners struct {
	UDP []*net.UDPConn
	TCP net.Listener
	// Inherited says the sockets belong to a supervisor that keeps them
	// open across restarts (systemd socket activation): on stop, what is
	// queued on them is left for the next process to answer. Otherwise the
	// sockets are the process's own and are drained before they close.
	Inherited bool
}

// Addr is the UDP address, the same port as TCP's.
func (l *Listeners) Addr() net.Addr { return l.UDP[0].LocalAddr() }

// Close closes every socket.
func (l *Listeners) Close() {
	for _, c := range l.UDP {
		c.Close()
	}
	l.TCP.Close()
}

// listenUDP opens n UDP sockets on addr, the first choosing the port when
// addr's port is 0.
func listenUDP(addr string, n int) ([]*net.UDPConn, error) {
	var conns []*net.UDPConn
	lc := net.ListenConfig{Control: reusePort}
	for i := range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			if i > 0 {
				break // no SO_REUSEPORT here: one socket it is
			}
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
		if i == 0 {
			// The others join the port the first one got.
			host, _, _ := net.SplitHostPort(addr)
			addr = net.JoinHostPort(host, portOf(pc.LocalAddr()))
		}
	}
	return conns, nil
}

func portOf(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		return strconv.Itoa(u.Port)
	}
	return "0"
}
