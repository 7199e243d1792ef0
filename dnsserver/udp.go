package dnsserver

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// udpBatch is how many datagrams one system call reads or writes: under
// load recvmmsg and sendmmsg spread a syscall over many queries, which
// otherwise cost most of the server's CPU.
const udpBatch = 32

// batchConn reads and writes datagrams in batches: recvmmsg and sendmmsg
// (mmsg_linux.go), or x/net's ipv4 or ipv6 PacketConn elsewhere, whose
// Message types are one type.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers queries on one UDP socket until it is closed, or, once
// stop is no longer udpServing, until a read times out: the fast path
// inline, the rest unpacked and answered as miekg/dns's server would. One
// goroutine per socket, none per packet; with SO_REUSEPORT there is a
// socket per core.
func (s *Server) serveUDP(conn *net.UDPConn, stop *atomic.Int32) error {
	bc, err := newBatchConn(conn)
	if err != nil {
		return err
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
				if stop.Load() != udpServing {
					return nil // drained, or told to leave the queue
				}
				continue
			}
			return err
		}
		snap := s.snap.Load()
		replies := 0
		var now int64
		if s.rrl != nil {
			now = s.rrl.now() // one clock read a batch
		}
		for _, msg := range in[:n] {
			req := msg.Buffers[0][:msg.N]
			buf := out[replies].Buffers[0][:maxUDPSize]
			m := 0
			switch s.limit(req, msg.Addr, now) {
			case rrlDrop:
			case rrlSlip:
				m = slipReply(req, buf)
			default:
				var qtype uint16
				if m, qtype = snap.fastAnswer(req, buf, false); m > 0 {
					s.stats.count(false, qtype, dns.RcodeSuccess, buf[offFlags]&(flagTC>>8) != 0)
				} else if reply := s.slowUDP(req, msg.Addr); reply != nil && len(reply) <= len(buf) {
					m = copy(buf, reply)
				}
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
		switch stop.Load() {
		case udpDraining:
			// Keep reading while datagrams keep coming: those queued
			// before the socket was detached.
			conn.SetReadDeadline(time.Now().Add(udpDrainIdle))
		case udpLeaving:
			return nil
		}
	}
}

// limit is the rate limit's verdict on answering req from addr: always
// answer when the limit is off, and for datagrams that are no query
// (responses and garbage get no answer, so they spend no token).
func (s *Server) limit(req []byte, addr net.Addr, now int64) rrlAction {
	if s.rrl == nil || len(req) < headerLen || req[2]&0x80 != 0 {
		return rrlAnswer
	}
	return s.rrl.take(addr, now)
}

// The states of a UDP socket's reader.
const (
	udpServing  = iota
	udpDraining // answer what is queued, then stop
	udpLeaving  // stop after the current batch
)

// udpDrainIdle is how long a draining socket stays quiet before it counts
// as drained. Once detached it gets no new datagrams, so the wait ends a
// stop only once.
const udpDrainIdle = 100 * time.Millisecond

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
