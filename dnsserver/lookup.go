package dnsserver

import (
	"math"
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
	// A question cut short after its name unpacks with class 0, which no
	// query may carry (RFC 6895 3.2): FORMERR, like any malformed query.
	// So are two OPT records (RFC 6891 6.1.1).
	if len(req.Question) != 1 || req.Question[0].Qclass == 0 || optCount(req.Extra) > 1 {
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

	limit := udpLimit(size)
	if tcp {
		size, limit = dns.MaxMsgSize, math.MaxInt
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	answers := 0 // records in the RRset, before any sampling
	switch {
	case q.Qclass != dns.ClassINET:
		// CHAOS, HESIOD and ANY too: the zone is class IN only.
		m.Rcode = dns.RcodeRefused
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		// Transfers are served over TCP (serveXFR), never over UDP.
		m.Rcode = dns.RcodeRefused
	case name == s.zone || strings.HasSuffix(name, "."+s.zone):
		answers = s.lookupZone(m, name, q.Qtype, limit)
	default:
		s.reverseLookup(m, name, q.Qtype)
	}
	answers = max(answers, len(m.Answer))
	if answers > limit {
		// Over UDP the rest could not fit anyway (see udpLimit), and the
		// additional records would all go: spare fit measuring them.
		m.Answer, m.Extra = m.Answer[:min(limit, len(m.Answer))], nil
	}

	if opt != nil {
		// A fresh slice: m.Extra may alias the snapshot's additional records.
		extra := make([]dns.RR, 0, len(m.Extra)+1)
		m.Extra = append(append(extra, m.Extra...), opt)
	}
	fit(m, size, answers)
	return m
}

// minRRLen is the shortest answer record this server sends: a compressed
// owner name (2 bytes), type, class, TTL and length (10) and at least one
// byte of data.
const minRRLen = 2 + 10 + 1

// udpLimit is how many answer records are worth looking at for a UDP
// answer of size bytes: more cannot fit after the header. Sampling that
// many from a large RRset, instead of shuffling and measuring all of it,
// keeps the cost of a query for 2,000 peers that takes the slow path
// near that of a small one.
func udpLimit(size int) int { return (size-headerLen)/minRRLen + 1 }

func optCount(extra []dns.RR) int {
	n := 0
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// fit trims m to size bytes; answers is how many answer records there
// were before answer sampled them. Additional records go first, then
// answer records. TC is set only when answer or authority records had to
// go: additional records are optional, and a client told to retry over
// TCP for them would only get the same answer (RFC 2181 9). A TC answer
// keeps the whole records that fit (RFC 2181 9), in the random order of
// the RRset, so that a client that uses it anyway (musl's resolver does
// not retry over TCP) still spreads over the peers. SRV targets may not
// be compressed (RFC 2782): an SRV record of a typical peer takes about
// 50 bytes, so the addresses of 1,000 SRV targets do not fit in 64 KiB
// even over TCP, and somewhat over 1,300 SRV records do not either.
func fit(m *dns.Msg, size, answers int) {
	authority := len(m.Ns)
	m.Truncate(size)
	m.Truncated = len(m.Answer) < answers || len(m.Ns) < authority
	// Truncate turns compression off when the message fits without it,
	// which doubles a large TCP answer (1,000 A records: 36 KB instead of
	// 16 KB). The fast path's answers are packed once, so this costs the
	// query path nothing there.
	m.Compress = true
}

// lookupZone answers a name inside the zone: authoritatively, NXDOMAIN for a
// name that does not exist and NODATA for a type it does not have, both
// with the SOA in the authority section (RFC 2308).
//
// It returns the size of the RRset, of which a shuffled RRset may hold
// only limit records in m, picked at random.
func (s *Snapshot) lookupZone(m *dns.Msg, name string, qtype uint16, limit int) int {
	n := s.lookup(name)
	if n == nil && s.pending[partLabel(s.zone, name)] {
		// A configured service without a set yet: "ask again", never
		// "no such name" (see Config.Services).
		m.Rcode = dns.RcodeServerFailure
		return 0
	}
	m.Authoritative = true
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = s.negSOA
		return 0
	}
	rrs := n.rrset(qtype)
	if len(rrs) == 0 {
		m.Ns = s.negSOA
		return 0
	}
	total := len(rrs)
	if n.shuffle && len(rrs) > 1 {
		rrs = shuffled(rrs, limit)
	}
	m.Answer = rrs
	if qtype == dns.TypeSRV {
		m.Extra = n.get().extra
	}
	return total
}

// reverseLookup answers PTR queries for peer addresses. The server is not
// the authority for the reverse zones, so anything else is REFUSED, as is
// every name outside the zone: it is no open resolver.
func (s *Snapshot) reverseLookup(m *dns.Msg, name string, qtype uint16) {
	ptrs := s.ptrs(name)
	if len(ptrs) == 0 || (qtype != dns.TypePTR && qtype != dns.TypeANY) {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	m.Answer = ptrs
}

// shuffled returns a randomly ordered copy of rrs, or of limit records of
// it picked at random when there are more: all of them just as likely, in
// a random order, without touching the rest. The global generator of
// math/rand/v2 is lock-free and safe for concurrent use.
func shuffled(rrs []dns.RR, limit int) []dns.RR {
	if limit < len(rrs)/2 {
		// Few of many: draw distinct indices. A draw repeats with
		// probability below one half, so this takes under 2*limit draws.
		out := make([]dns.RR, 0, limit)
		taken := make([]uint64, (len(rrs)+63)/64)
		for len(out) < limit {
			i := rand.IntN(len(rrs))
			if taken[i/64]&(1<<(i%64)) != 0 {
				continue
			}
			taken[i/64] |= 1 << (i % 64)
			out = append(out, rrs[i])
		}
		return out
	}
	out := make([]dns.RR, len(rrs))
	copy(out, rrs)
	for i := len(out) - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	return out
}
