//go:build !linux

package dnsserver

import (
	"net"
	"syscall"
)

// listenTCP listens on addr; SO_REUSEPORT is Linux's.
func listenTCP(addr string, _ bool) (net.Listener, error) { return net.Listen("tcp", addr) }

// reusePort is Linux's; elsewhere the server reads one UDP socket.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }

// detachUDP is Linux's; elsewhere a stop drains until the socket is idle.
func detachUDP(*net.UDPConn) error { return nil }
