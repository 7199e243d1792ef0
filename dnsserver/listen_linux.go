package dnsserver

import (
	"context"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort lets several sockets share a port: UDP sockets, so that the
// kernel spreads queries over one reading goroutine per core, and the
// sockets of a new process beside an old one during a restart.
func reusePort(_, _ string, c syscall.RawConn) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return sockErr
}

// detachUDP stops the kernel from queuing new datagrams on conn while
// what is queued already stays readable: it connects the socket to its
// own port on its own (or, when bound to a wildcard, the loopback)
// address, from which no query ever comes. A connected socket no longer
// matches other sources, so the kernel hands their datagrams to the other
// sockets of the SO_REUSEPORT group, a new process's.
func detachUDP(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	err = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			sockErr = err
			return
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			if a.Addr == [4]byte{} {
				a.Addr = [4]byte{127, 0, 0, 1}
			}
			sockErr = unix.Connect(int(fd), a)
		case *unix.SockaddrInet6:
			if a.Addr == [16]byte{} {
				a.Addr = [16]byte{15: 1}
			}
			sockErr = unix.Connect(int(fd), a)
		}
	})
	if err != nil {
		return err
	}
	return sockErr
}

// listenTCP listens on addr with SO_REUSEPORT. With exclusive, the port is
// bound before SO_REUSEPORT is set, so that a port another process's
// listeners hold fails as it would without it; the kernel forms the
// SO_REUSEPORT group at listen, when the option is on.
func listenTCP(addr string, exclusive bool) (net.Listener, error) {
	if !exclusive {
		lc := net.ListenConfig{Control: reusePort}
		return lc.Listen(context.Background(), "tcp", addr)
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: ta.Port})
	if ip4 := ta.IP.To4(); ip4 != nil {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: ta.Port, Addr: [4]byte(ip4)}
	} else if ta.IP != nil {
		sa.(*unix.SockaddrInet6).Addr = [16]byte(ta.IP.To16())
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err == unix.EAFNOSUPPORT && ta.IP == nil {
		// A wildcard on a host without IPv6: IPv4's, as Go listens.
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: ta.Port}
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	}
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), "dns-tcp")
	defer f.Close() // FileListener holds a copy
	steps := []struct {
		name string
		fn   func() error
	}{
		{"setsockopt", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) }},
		{"setsockopt", func() error {
			if family == unix.AF_INET6 {
				return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0) // dual stack, as Go listens
			}
			return nil
		}},
		{"bind", func() error { return unix.Bind(fd, sa) }},
		{"setsockopt", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }},
		{"listen", func() error { return unix.Listen(fd, unix.SOMAXCONN) }},
	}
	for _, st := range steps {
		if err := st.fn(); err != nil {
			return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: ta, Err: os.NewSyscallError(st.name, err)}
		}
	}
	return net.FileListener(f)
}
