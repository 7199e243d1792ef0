package dnsserver

import (
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TSIG (RFC 8945) is miekg/dns's: over TCP its server verifies requests
// with the key as TsigSecret and signs replies that carry a TSIG record;
// over UDP, where the server reads its own sockets, signedUDP calls the
// same TsigVerify and TsigGenerate.

// tsigError is the TSIG error of a signed request given miekg/dns's
// verdict, or RcodeSuccess. A key of the right name with another algorithm
// is a key the server does not know (RFC 8945 5.2.1).
func tsigError(status error, tsig *dns.TSIG, key *TSIGKey) int {
	switch {
	case !strings.EqualFold(tsig.Hdr.Name, key.Name) || !strings.EqualFold(dns.Fqdn(tsig.Algorithm), key.Algorithm):
		return dns.RcodeBadKey
	case status == nil:
		return dns.RcodeSuccess
	case errors.Is(status, dns.ErrTime):
		return dns.RcodeBadTime
	case errors.Is(status, dns.ErrSecret), errors.Is(status, dns.ErrKeyAlg):
		return dns.RcodeBadKey
	default:
		return dns.RcodeBadSig
	}
}

// notAuth is the reply to a request whose TSIG failed: NOTAUTH, and a TSIG
// record carrying the error, unsigned for BADKEY and BADSIG (miekg/dns
// leaves the MAC out for those).
func notAuth(req *dns.Msg, tsig *dns.TSIG, code int) *dns.Msg {
	m := rcodeReply(req, dns.RcodeNotAuth)
	m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
	m.Extra[len(m.Extra)-1].(*dns.TSIG).Error = uint16(code)
	return m
}

// signed adds a TSIG record to m when the request had one, for miekg/dns's
// WriteMsg to sign.
func signed(m *dns.Msg, tsig *dns.TSIG) *dns.Msg {
	if tsig != nil {
		m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
	}
	return m
}

// signedUDP answers a TSIG-signed query that came over UDP (secondaries
// sign their SOA queries): verified and signed with the key, or NOTAUTH.
// Transfers stay refused over UDP, as answer refuses them.
func (s *Server) signedUDP(req *dns.Msg, wire []byte, from net.Addr) []byte {
	key := s.xfr.cfg.Key
	tsig := req.IsTsig()
	var m *dns.Msg
	code := tsigError(dns.TsigVerify(wire, key.Secret, "", false), tsig, key)
	if code != dns.RcodeSuccess {
		s.clientLog.warn("dns request with a bad TSIG", addrString(from), "transport", "udp", "key", tsig.Hdr.Name, "error", dns.RcodeToString[code])
		m = notAuth(req, tsig, code)
	} else {
		m = s.snap.Load().answer(req, false)
		limit := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
		// Room for the TSIG record, with the longest MAC (SHA-512).
		reserve := dns.Len(&dns.TSIG{Hdr: dns.RR_Header{Name: tsig.Hdr.Name}, Algorithm: tsig.Algorithm, MAC: strings.Repeat("00", 64)})
		if m.Len()+reserve > limit {
			sampled := m.Truncated // answer may have sampled the RRset already
			fit(m, limit-reserve, len(m.Answer))
			m.Truncated = m.Truncated || sampled
		}
		m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
	}
	var qtype uint16
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.stats.count(false, qtype, m.Rcode, m.Truncated)
	out, _, err := dns.TsigGenerate(m, key.Secret, tsig.MAC, false)
	if err != nil {
		s.log.Debug("dns reply not signed", "error", err)
		return nil
	}
	return out
}

// addrString is addr as a log attribute; nil for none.
func addrString(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	return addr.String()
}
