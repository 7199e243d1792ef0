package dnsserver

import (
	"strconv"
	"sync/atomic"

	"github.com/miekg/dns"
)

// countedTypes are the query types counted by name; the rest count as
// "other", which keeps the table fixed and the counting allocation-free.
var countedTypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR, dns.TypeSOA, dns.TypeNS, dns.TypeANY,
}

const (
	otherType  = len(countedTypes)
	maxRcode   = dns.RcodeBadVers // the largest rcode the server sends
	transports = 2                // udp, tcp
)

// stats counts answers by transport, query type and rcode: an index and an
// atomic add per query, no lock, no allocation.
type stats struct {
	answers   [transports][otherType + 1][maxRcode + 1]atomic.Uint64
	truncated [transports]atomic.Uint64
	// tcpOpen and tcpEvicted are the connection limiter's.
	tcpOpen    atomic.Int64
	tcpEvicted atomic.Uint64
	// tcpWriteTimeouts counts connections closed by the write timeout.
	tcpWriteTimeouts atomic.Uint64
}

func (s *stats) count(tcp bool, qtype uint16, rcode int, truncated bool) {
	t := 0
	if tcp {
		t = 1
	}
	q := otherType
	for i, ct := range countedTypes {
		if ct == qtype {
			q = i
			break
		}
	}
	s.answers[t][q][min(max(rcode, 0), maxRcode)].Add(1)
	if truncated {
		s.truncated[t].Add(1)
	}
}

// Stats are the server's counters so far, for metrics.
type Stats struct {
	// Queries are the non-zero answer counts.
	Queries []QueryCount
	// TruncatedUDP and TruncatedTCP count answers sent with TC set.
	TruncatedUDP, TruncatedTCP uint64
	// Transfers are the zone transfer counts, zeros included.
	Transfers []TransferCount
	// NotifiesSent counts NOTIFY messages (each attempt), NotifiesAcked
	// the acknowledged ones, NotifiesFailed the changes given up on after
	// every attempt failed.
	NotifiesSent, NotifiesAcked, NotifiesFailed uint64
	// TCPConnsOpen is the DNS TCP connections open now; TCPConnsEvicted
	// those closed to make room for a new one at the cap.
	TCPConnsOpen    int64
	TCPConnsEvicted uint64
	// NamesTooLong counts peers left out of the records built so far
	// because their owner name would exceed 255 octets.
	NamesTooLong int64
	// RateLimitSlipped and RateLimitDropped count the UDP answers over
	// the rate limit sent truncated and empty, and dropped (rrl.go).
	RateLimitSlipped, RateLimitDropped uint64
	// TCPWriteTimeouts counts TCP connections closed because a write to
	// the client timed out; TransfersOpen is the zone transfers under way.
	TCPWriteTimeouts uint64
	TransfersOpen    int
}

// Stats returns the counters so far. Each is read atomically; together
// they are no snapshot, which metrics do not need.
func (s *Server) Stats() Stats {
	st := Stats{Queries: s.queryCounts(), Transfers: s.transferCounts(), NamesTooLong: s.namesTooLong()}
	st.TruncatedUDP, st.TruncatedTCP = s.truncatedCounts()
	st.NotifiesSent, st.NotifiesAcked, st.NotifiesFailed = s.notifyCounts()
	st.TCPConnsOpen, st.TCPConnsEvicted = s.tcpConns()
	st.RateLimitSlipped, st.RateLimitDropped = s.rateLimited()
	st.TCPWriteTimeouts, st.TransfersOpen = s.stats.tcpWriteTimeouts.Load(), s.openTransfers()
	return st
}

// QueryCount is the number of answers of one transport, query type and
// rcode.
type QueryCount struct {
	Transport, Type, Rcode string
	Count                  uint64
}

// queryCounts returns the non-zero answer counts so far.
func (s *Server) queryCounts() []QueryCount {
	var out []QueryCount
	for t := range transports {
		for q := range otherType + 1 {
			for r := range maxRcode + 1 {
				n := s.stats.answers[t][q][r].Load()
				if n == 0 {
					continue
				}
				out = append(out, QueryCount{Transport: transportName(t), Type: typeName(q), Rcode: rcodeName(r), Count: n})
			}
		}
	}
	return out
}

// truncatedCounts returns how many answers were sent with TC set, by transport.
func (s *Server) truncatedCounts() (udp, tcp uint64) {
	return s.stats.truncated[0].Load(), s.stats.truncated[1].Load()
}

func transportName(t int) string {
	if t == 1 {
		return "tcp"
	}
	return "udp"
}

func typeName(q int) string {
	if q == otherType {
		return "other"
	}
	return dns.TypeToString[countedTypes[q]]
}

func rcodeName(r int) string {
	if s, ok := dns.RcodeToString[r]; ok {
		return s
	}
	return strconv.Itoa(r)
}
