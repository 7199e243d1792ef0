package dnsserver

import (
	"errors"
	"net"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is how many datagrams one system call reads or writes: under
// load recvmmsg and sendmmsg spread a syscall over many queries, which
// otherwise cost most of the server's CPU.
const udpBatch = 32

// batchConn reads and writes datagrams in batches: x/net's ipv4 or ipv6
// PacketConn, whose Message types are one type.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers queries on one UDP socket until it is closed: the fast
// path inline, the rest unpacked and answered as miekg/dns's server would.
// One goroutine per socket, none per packet; with SO_REUSEPORT there is a
// socket per core.
func (s *Server) serveUDP(conn *net.UDPConn) error {
	var bc batchConn = ipv6.NewPacketConn(conn)
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		bc = ipv4.NewPacketConn(conn)
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)} // large enough for any sane query
		out[i].Buffers = [][]byte{make([]byte, maxUDPSize)}
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		snap := s.snap.Load()
		replies := 0
		for _, msg := range in[:n] {
			req := msg.Buffers[0][:msg.N]
			buf := out[replies].Buffers[0][:maxUDPSize]
			m, qtype := snap.fastAnswer(req, buf)
			if m > 0 {
				s.stats.count(false, qtype, dns.RcodeSuccess, buf[offFlags]&(flagTC>>8) != 0)
			} else if reply := s.slowUDP(req, msg.Addr); reply != nil && len(reply) <= len(buf) {
				m = copy(buf, reply)
			}
			if m > 0 {
				out[replies].Buffers[0] = buf[:m]
				out[replies].Addr = msg.Addr
				replies++
			}
		}
		for sent := 0; sent < replies; {
			k, err := bc.WriteBatch(out[sent:replies], 0)
			if err != nil {
				// A client that went away must not cost the others their
				// answers: skip the datagram that failed.
				k = max(k, 1)
			}
			sent += k
		}
	}
}

// slowUDP answers what the fast path does not: it applies the same
// acceptance rules as miekg/dns's server (drop responses and garbage,
// FORMERR or NOTIMP what it cannot take), then answer.
func (s *Server) slowUDP(wire []byte, from net.Addr) []byte {
	h, ok := parseHeader(wire)
	if !ok {
		return nil // garbage: any reply could be used to amplify
	}

	req := new(dns.Msg)
	action := acceptQuery(h)
	if action == dns.MsgIgnore {
		return nil
	}
	var m *dns.Msg
	if action == dns.MsgAccept && req.Unpack(wire) == nil {
		if req.IsTsig() != nil && s.xfr.cfg.Key != nil {
			return s.signedUDP(req, wire, from) // tsig.go
		}
		m = s.snap.Load().answer(req, false)
	} else {
		// As miekg/dns answers: the header, the rcode, and no records.
		m = &dns.Msg{MsgHdr: dns.MsgHdr{Id: h.Id, Response: true, Opcode: opcode(h), Rcode: dns.RcodeFormatError}}
		if action == dns.MsgRejectNotImplemented {
			m.Rcode = dns.RcodeNotImplemented
		}
	}
	var qtype uint16
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.stats.count(false, qtype, m.Rcode, m.Truncated)
	out, err := m.Pack()
	if err != nil {
		s.log.Debug("dns reply not packed", "error", err)
		return nil
	}
	return out
}
