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

// QueryCount is the number of answers of one transport, query type and
// rcode.
type QueryCount struct {
	Transport, Type, Rcode string
	Count                  uint64
}

// QueryCounts returns the non-zero answer counts so far.
func (s *Server) QueryCounts() []QueryCount {
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

// Truncated returns how many answers were sent with TC set, by transport.
func (s *Server) Truncated() (udp, tcp uint64) {
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
