//go:build !linux

package dnsserver

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// newBatchConn is x/net's batch reads and writes where mmsg_linux.go's
// raw system calls are not built.
func newBatchConn(conn *net.UDPConn) (batchConn, error) {
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return ipv4.NewPacketConn(conn), nil
	}
	return ipv6.NewPacketConn(conn), nil
}
