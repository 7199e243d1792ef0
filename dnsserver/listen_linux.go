package dnsserver

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort lets several UDP sockets share a port, so that the kernel
// spreads queries over one reading goroutine per core.
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
