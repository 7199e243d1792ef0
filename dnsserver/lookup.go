package dnsserver

import (
	"math/rand/v2"
	"strings"

	"github.com/miekg/dns"
)

// maxUDPSize is the largest answer sent over UDP, whatever the client
// offers: 1232 bytes avoids IP fragmentation on any path (DNS Flag Day
// 2020). Clients without EDNS0 get 512 (RFC 1035).
const maxUDPSize = 1232

// answer builds the reply to req from the snapshot. It is the whole query
// path: no lock, no I/O, and the snapshot is only read.
func (s *Snapshot) answer(req *dns.Msg, tcp bool) *dns.Msg {
	// SetReply, minus its copy of the question: the reply may share the
	// request's, which nothing modifies.
	m := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id: req.Id, Response: true, Opcode: req.Opcode,
		RecursionDesired: req.RecursionDesired, CheckingDisabled: req.CheckingDisabled,
	}}
	if len(req.Question) > 0 {
		m.Question = req.Question[:1:1]
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}

	size := dns.MinMsgSize
	var opt *dns.OPT
	if ro := req.IsEdns0(); ro != nil {
		opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(maxUDPSize)
		// RFC 3225: the DO bit is copied into the response.
		opt.SetDo(ro.Do())
		if ro.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			m.Extra = []dns.RR{opt}
			return m
		}
		size = min(max(int(ro.UDPSize()), dns.MinMsgSize), maxUDPSize)
	}

	q := req.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		// No zone transfers: the records change with every poll anyway.
		m.Rcode = dns.RcodeRefused
	case name == s.zone || strings.HasSuffix(name, "."+s.zone):
		s.lookupZone(m, name, q.Qtype)
	default:
		s.reverseLookup(m, name, q.Qtype)
	}

	if opt != nil {
		// A fresh slice: m.Extra may alias the snapshot's additional records.
		extra := make([]dns.RR, 0, len(m.Extra)+1)
		m.Extra = append(append(extra, m.Extra...), opt)
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	fit(m, size)
	return m
}

// fit trims m to size bytes. TC is set only when answer or authority
// records had to go: additional records are optional, and a client told to
// retry over TCP for them would only get the same answer (RFC 2181 9).
// SRV targets may not be compressed (RFC 2782), so the addresses of 1,000
// SRV targets do not fit in 64 KiB even over TCP.
func fit(m *dns.Msg, size int) {
	answers, authority := len(m.Answer), len(m.Ns)
	m.Truncate(size)
	if len(m.Answer) == answers && len(m.Ns) == authority {
		m.Truncated = false
	}
	// Truncate turns compression off when the message fits without it,
	// which doubles a large TCP answer (1,000 A records: 36 KB instead of
	// 16 KB). The fast path's answers are packed once, so this costs the
	// query path nothing there.
	m.Compress = true
}

// lookupZone answers a name inside the zone: authoritatively, NXDOMAIN for a
// name that does not exist and NODATA for a type it does not have, both
// with the SOA in the authority section (RFC 2308).
func (s *Snapshot) lookupZone(m *dns.Msg, name string, qtype uint16) {
	m.Authoritative = true
	n := s.names[name]
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = s.negSOA
		return
	}
	rrs := n.rrset(qtype)
	if len(rrs) == 0 {
		m.Ns = s.negSOA
		return
	}
	if n.shuffle && len(rrs) > 1 {
		rrs = shuffled(rrs)
	}
	m.Answer = rrs
	if qtype == dns.TypeSRV {
		m.Extra = n.extra
	}
}

// reverseLookup answers PTR queries for peer addresses. The server is not
// the authority for the reverse zones, so anything else is REFUSED, as is
// every name outside the zone: it is no open resolver.
func (s *Snapshot) reverseLookup(m *dns.Msg, name string, qtype uint16) {
	n := s.reverse[name]
	if n == nil || (qtype != dns.TypePTR && qtype != dns.TypeANY) {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	m.Answer = n.ptr
}

// shuffled returns a randomly ordered copy of rrs. The global generator of
// math/rand/v2 is lock-free and safe for concurrent use.
func shuffled(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	copy(out, rrs)
	for i := len(out) - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	return out
}
