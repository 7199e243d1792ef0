//go:build !linux

package dnsserver

import "syscall"

// reusePort is Linux's; elsewhere the server reads one UDP socket.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
