//go:build linux

package dnsserver

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsgConn reads and writes datagrams with recvmmsg and sendmmsg called
// as raw system calls. The socket is non-blocking, so neither call ever
// blocks: a raw call needs no hand-over to the scheduler, which x/net's
// (syscall.Syscall) makes on every batch and which, with its wake-ups of
// the runtime's monitor thread, cost more of the server's CPU than
// answering. It also keeps each sender's address in a buffer of its own,
// where x/net makes a new net.UDPAddr for every datagram.
//
// A read fills ms[i].Addr with a *net.UDPAddr owned by the conn, valid
// until the next read: the serve loop writes its answers before it
// reads again.
type mmsgConn struct {
	rc    syscall.RawConn
	in    [udpBatch]mmsghdr
	inIov [udpBatch]unix.Iovec
	names [udpBatch]unix.RawSockaddrInet6 // large enough for either family
	addrs [udpBatch]net.UDPAddr
	ips   [udpBatch][16]byte

	out      [udpBatch]mmsghdr
	outIov   [udpBatch]unix.Iovec
	outNames [udpBatch]unix.RawSockaddrInet6
}

// mmsghdr is struct mmsghdr: a msghdr and the length the call wrote.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func newBatchConn(conn *net.UDPConn) (batchConn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &mmsgConn{rc: rc}, nil
}

// ReadBatch reads up to len(ms) datagrams, waiting for the first.
func (c *mmsgConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	n := min(len(ms), udpBatch)
	for i := range n {
		b := ms[i].Buffers[0]
		c.inIov[i] = unix.Iovec{Base: &b[0]}
		c.inIov[i].SetLen(len(b))
		c.in[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&c.names[i])), Namelen: unix.SizeofSockaddrInet6, Iov: &c.inIov[i]}
		c.in[i].hdr.SetIovlen(1)
	}
	var got int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.in[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		got, errno = int(r), e
		return e != unix.EAGAIN && e != unix.EWOULDBLOCK
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	for i := range got {
		ms[i].N = int(c.in[i].len)
		ms[i].Addr = c.addr(i)
	}
	return got, nil
}

// addr decodes the sender's address of datagram i into the conn's own
// net.UDPAddr for it.
func (c *mmsgConn) addr(i int) net.Addr {
	a, raw := &c.addrs[i], &c.names[i]
	switch raw.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		copy(c.ips[i][:4], sa.Addr[:])
		a.IP = c.ips[i][:4]
		a.Port = int(binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
		a.Zone = ""
	default:
		copy(c.ips[i][:], raw.Addr[:])
		a.IP = c.ips[i][:16]
		a.Port = int(binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:]))
		a.Zone = "" // link-local scopes are not served here
	}
	return a
}

// WriteBatch sends ms, each to its Addr, and returns how many went out.
func (c *mmsgConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	n := min(len(ms), udpBatch)
	for i := range n {
		ua, ok := ms[i].Addr.(*net.UDPAddr)
		if !ok {
			return 0, errors.New("dnsserver: not a UDP address")
		}
		nameLen := c.encode(i, ua)
		b := ms[i].Buffers[0]
		c.outIov[i] = unix.Iovec{Base: &b[0]}
		c.outIov[i].SetLen(len(b))
		c.out[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&c.outNames[i])), Namelen: nameLen, Iov: &c.outIov[i]}
		c.out[i].hdr.SetIovlen(1)
	}
	var sent int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.out[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		sent, errno = int(r), e
		return e != unix.EAGAIN && e != unix.EWOULDBLOCK
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return sent, nil
}

// encode writes ua as the sockaddr of message i, in the family the
// socket reads from: an IPv4 sender as AF_INET (an IPv4 socket), an
// IPv6 one as AF_INET6.
func (c *mmsgConn) encode(i int, ua *net.UDPAddr) uint32 {
	raw := &c.outNames[i]
	if ip4 := ua.IP.To4(); ip4 != nil && len(ua.IP) == net.IPv4len {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], uint16(ua.Port))
		copy(sa.Addr[:], ip4)
		return unix.SizeofSockaddrInet4
	}
	*raw = unix.RawSockaddrInet6{Family: unix.AF_INET6}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], uint16(ua.Port))
	copy(raw.Addr[:], ua.IP.To16())
	return unix.SizeofSockaddrInet6
}
