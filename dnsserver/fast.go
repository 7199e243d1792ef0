package dnsserver

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// The fast path answers the common UDP queries - one question, class IN,
// no EDNS or plain EDNS version 0 - from answers packed when the snapshot
// was built: copy, patch the ID, flags and the question's letter case,
// send. No unpacking, no allocation. Anything else takes the slow path,
// which unpacks the query and builds the answer (answer), so the two
// cannot disagree: the packed answers are answer's own output.

// shuffleVariants is how many random orders of a shuffled RRset are packed;
// each query picks one.
const shuffleVariants = 8

// packed holds one name and type's answers, in random orders.
type packed struct {
	plain [][]byte // without EDNS: at most 512 bytes, TC set if cut
	// edns are the answers with an OPT record (DO clear): at most 1232
	// bytes, TC set if cut. nil when each is its plain answer with the
	// OPT record appended (isWithOPT): so it is for every answer that fits
	// in 512 bytes unshuffled, a peer's own name's, and storing it once
	// halves the packed answers of a large topology.
	edns [][]byte
	// serialAt, when not 0, is where the SOA serial of a negative answer
	// is, in every variant: a later snapshot takes the answer over and
	// writes its own serial there.
	serialAt int
	// addrAt, when not 0, is where the address of an answer of one A or
	// AAAA record is, held as zeros: the fast path writes the address of
	// the node's record there, so that one packed answer serves every
	// peer's name of a length.
	addrAt int
}

// Every packed answer holds its question's name as zeros: the fast path
// writes the name as asked over it. So the negative answers of the names
// of one length in the zone are the same bytes (the SOA's names compress
// against the question's by offset), and so are the answers of one
// address record once the address is zeroed too (addrAt): a build shares
// them (interner), and a topology's peers' A answers and AAAA NODATA
// answers take a few packed answers, not one per peer.

// optRR is the OPT record of the fast path's EDNS answers: root owner,
// maxUDPSize, no extended rcode, version 0, DO clear, no options.
var optRR = [...]byte{0, byte(dns.TypeOPT >> 8), byte(dns.TypeOPT), maxUDPSize >> 8, maxUDPSize & 0xff, 0, 0, 0, 0, 0, 0}

// interner is what one build's packing shares: the packed answers that
// are the same bytes (the negative ones, which repeat for every name of
// a length, and those of one address record), the same by their shape,
// and a buffer to pack into.
type interner struct {
	shared map[string]*packed
	shapes map[shape]*packed
	buf    []byte
}

// shape is what an answer of one address record, or a NODATA answer,
// depends on besides the address: answer makes the same bytes (once the
// name and address are zeroed) for every name of one parent and length.
// The parent decides where the zone's and the SOA's names compress to
// in the question's name.
type shape struct {
	parent  string
	nameLen int
	qtype   uint16
	ttl     uint32 // of the one record, 0 for NODATA
}

func newInterner() *interner {
	return &interner{shared: map[string]*packed{}, shapes: map[shape]*packed{}}
}

// packShaped returns the packed answers to name and qtype, whose RRset is
// rrs, taken from one of the same shape packed before when there is one:
// packing answers that come out the same is the bulk of building a large
// topology's records, and of its garbage.
func (s *Snapshot) packShaped(in *interner, name string, nameLen int, qtype uint16, rrs []dns.RR, shuffle bool) *packed {
	k, ok := shape{nameLen: nameLen, qtype: qtype}, false
	if _, parent, cut := strings.Cut(name, "."); cut {
		k.parent = parent
		switch len(rrs) {
		case 0:
			ok = true
		case 1:
			h := rrs[0].Header()
			_, addr := rrAddr(rrs[0])
			k.ttl, ok = h.Ttl, addr && h.Name == name && h.Class == dns.ClassINET && h.Rrtype == qtype
		}
	}
	if ok {
		if p := in.shapes[k]; p != nil {
			return p
		}
	}
	p := in.share(s.packOne(in, name, nameLen, qtype, shuffle && len(rrs) > 1, false), rrs)
	if ok && p != nil && (p.addrAt != 0) == (len(rrs) == 1) && (p.serialAt != 0) == (len(rrs) == 0) {
		in.shapes[k] = p
	}
	return p
}

// share returns the packed answer equal to p from in, noting p there if
// there is none; p itself when p is neither a negative answer nor one of
// rrs, the RRset it answers with, holding one address record.
func (in *interner) share(p *packed, rrs []dns.RR) *packed {
	if p == nil || len(p.plain) != 1 || p.edns != nil {
		return p
	}
	msg := p.plain[0]
	if p.serialAt == 0 {
		at := addrOffset(msg, rrs)
		if at == 0 {
			return p
		}
		clear(msg[at:])
		p.addrAt = at
	}
	if q, ok := in.shared[string(msg)]; ok {
		if q.serialAt == p.serialAt && q.addrAt == p.addrAt {
			return q
		}
		return p
	}
	in.shared[string(msg)] = p
	return p
}

// addrOffset finds the address in msg, a packed answer without EDNS of
// rrs: one question, the one A or AAAA record of rrs as the answer, its
// address last. 0 when msg is not one.
func addrOffset(msg []byte, rrs []dns.RR) int {
	if len(rrs) != 1 {
		return 0
	}
	ip, ok := rrAddr(rrs[0])
	h, okh := parseHeader(msg)
	if !ok || !okh || h.Ancount != 1 || h.Nscount != 0 || h.Arcount != 0 {
		return 0
	}
	at := len(msg) - len(ip)
	if at < headerLen+2 || int(binary.BigEndian.Uint16(msg[at-2:])) != len(ip) || !bytes.Equal(msg[at:], ip) {
		return 0
	}
	return at
}

// rrAddr is the address of an A or AAAA record as it is packed.
func rrAddr(rr dns.RR) ([]byte, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		ip := rr.A.To4()
		return ip, ip != nil
	case *dns.AAAA:
		return rr.AAAA, len(rr.AAAA) == net.IPv6len
	}
	return nil, false
}

// pack packs the answers of the fast path for name, whose node is n, into
// n: answer's own replies to the queries cluster clients repeat. A and
// AAAA (stub resolvers ask for both, so NODATA too) and SRV. TXT, PTR,
// SOA, NS and misses are rare and take the slow path; packing them would
// only make a change of a large cluster slower. in shares equal answers.
func (s *Snapshot) pack(name string, n *node, in *interner) {
	var wire [maxNameOctets]byte
	l, err := dns.PackDomainName(name, wire[:], 0, nil, false)
	if err != nil || !fastName(wire[:l]) {
		return // the fast path could not find it
	}
	n.fastA = s.packShaped(in, name, l, dns.TypeA, n.a, n.shuffle)
	n.fastAAAA = s.packShaped(in, name, l, dns.TypeAAAA, n.aaaa, n.shuffle)
	if len(n.get().srv) > 0 {
		n.fastSRV = s.packOne(in, name, l, dns.TypeSRV, n.shuffle && len(n.get().srv) > 1, false)
	}
}

// fastName reports whether a wire-format name's text form is its labels
// joined by dots, with nothing to escape: the fast path looks names up by
// that text, and leaves the others to the slow path.
func fastName(wire []byte) bool {
	for off := 0; off < len(wire); {
		l := int(wire[off])
		if l == 0 {
			return off > 0
		}
		for _, c := range wire[off+1 : min(off+1+l, len(wire))] {
			if !plainByte(c) {
				return false
			}
		}
		off += 1 + l
	}
	return false
}

// plainByte reports whether c stands for itself in a name's text form.
// Upper-case letters do not: names are looked up in lower case.
func plainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '*'
}

// foldPlain maps the bytes of names the fast path looks up to their
// lower case (plainByte, and upper-case letters), every other byte to 0.
var foldPlain = func() (t [256]byte) {
	for c := range 256 {
		if lc := byte(c) | ('a' - 'A'); 'A' <= c && c <= 'Z' {
			t[c] = lc
		} else if plainByte(byte(c)) {
			t[c] = byte(c)
		}
	}
	return t
}()

// packOne packs the answers to one name, whose wire form is nameLen bytes
// long, and type, as sent over UDP or, with tcp, over TCP; nil if they do
// not pack.
func (s *Snapshot) packOne(in *interner, name string, nameLen int, qtype uint16, shuffle, tcp bool) *packed {
	variants := 1
	if shuffle {
		variants = shuffleVariants
	}
	p := &packed{plain: make([][]byte, 0, variants)}
	req := new(dns.Msg).SetQuestion(name, qtype)
	req.RecursionDesired = false
	req.Id = 0 // the fast path writes the query's: answers that differ in nothing else are shared
	for _, edns := range []bool{false, true} {
		if edns {
			req.SetEdns0(maxUDPSize, false)
		}
		for range variants {
			// Truncated answers too: a client that wants every record
			// comes back over TCP, and this one must cost no more than
			// a small answer (RFC 2181 9 allows either).
			m := s.answer(req, tcp)
			// Packed into the build's buffer and copied out: Pack
			// leaves room for the answer uncompressed, half again its
			// size, in every answer kept.
			if in.buf == nil {
				in.buf = make([]byte, 4*maxUDPSize)
			}
			out, err := m.PackBuffer(in.buf)
			if err != nil || len(out) < headerLen+nameLen {
				return nil
			}
			if len(m.Answer) == 0 && len(m.Ns) == 1 {
				at := serialOffset(out)
				if at == 0 || (p.serialAt != 0 && at != p.serialAt) {
					return nil
				}
				p.serialAt = at
			}
			clear(out[headerLen : headerLen+nameLen]) // written as asked
			if edns && variants == 1 && isWithOPT(out, p.plain[0]) {
				break // the plain answer and OPT: p.edns stays nil
			}
			out = bytes.Clone(out)
			if edns {
				p.edns = append(p.edns, out)
			} else {
				p.plain = append(p.plain, out)
			}
		}
	}
	if len(p.edns) == 0 {
		p.edns = nil
	}
	return p
}

// isWithOPT reports whether msg is plain, a packed answer without EDNS,
// with optRR added to its additional section.
func isWithOPT(msg, plain []byte) bool {
	return len(msg) == len(plain)+len(optRR) && len(plain) >= headerLen &&
		bytes.Equal(msg[:offARCount], plain[:offARCount]) &&
		binary.BigEndian.Uint16(msg[offARCount:]) == binary.BigEndian.Uint16(plain[offARCount:])+1 &&
		bytes.Equal(msg[headerLen:len(plain)], plain[headerLen:]) && bytes.Equal(msg[len(plain):], optRR[:])
}

// serialOffset finds the SOA serial in a packed negative answer: one
// question, no answer, the SOA alone in the authority section. 0 when the
// message is not one.
func serialOffset(msg []byte) int {
	h, ok := parseHeader(msg)
	if !ok || h.Qdcount != 1 || h.Ancount != 0 || h.Nscount != 1 {
		return 0
	}
	off := skipName(msg, headerLen) + 4 // the question
	off = skipName(msg, off)            // the SOA's owner
	if off <= 0 || off+10 > len(msg) || binary.BigEndian.Uint16(msg[off:]) != dns.TypeSOA {
		return 0
	}
	off = skipName(msg, off+10) // MNAME
	off = skipName(msg, off)    // RNAME
	if off <= 0 || off+4 > len(msg) {
		return 0
	}
	return off
}

// skipName returns the offset after the wire-format name at off, or -1.
func skipName(msg []byte, off int) int {
	for off >= 0 && off < len(msg) {
		switch l := int(msg[off]); {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0:
			return off + 2 // a compression pointer ends the name
		default:
			off += 1 + l
		}
	}
	return -1
}

// fastAnswer writes the answer to the query in req to out and returns its
// length, or 0 when the query needs the slow path; with tcp, the answer as
// sent over TCP. It reads req only as far as it must, and allocates
// nothing once a TCP answer has been packed (fullPacked).
func (s *Snapshot) fastAnswer(req, out []byte, tcp bool) (n int, qtype uint16) {
	// Header: a query (QR clear, opcode QUERY, TC clear), one question, no
	// answer or authority records, at most the OPT record.
	h, ok := parseHeader(req)
	if !ok || h.Bits&(flagQR|maskOpcode|flagTC) != 0 ||
		h.Qdcount != 1 || h.Ancount != 0 || h.Nscount != 0 || h.Arcount > 1 {
		return 0, 0
	}
	// The name: uncompressed labels, lower-cased into its text form, by
	// which the snapshot's names are found. A byte the text form would
	// escape is in none of them: such a name takes the slow path.
	var text [255]byte
	var starts [128]uint8 // where each label begins in text
	labels := 0
	mixed := false // upper-case letters in the name
	off := headerLen
	for {
		if off >= len(req) || off-headerLen >= 255 {
			return 0, 0
		}
		l := int(req[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(req) || off-headerLen+1+l >= 255 {
			return 0, 0 // a compression pointer, a bad label, a name too long
		}
		starts[labels] = uint8(off - headerLen)
		labels++
		for i := off + 1; i <= off+l; i++ {
			c := req[i]
			lc := foldPlain[c]
			if lc == 0 {
				return 0, 0
			}
			mixed = mixed || lc != c
			text[i-headerLen-1] = lc
		}
		off += 1 + l
		text[off-headerLen-1] = '.'
	}
	nameEnd := off
	if nameEnd-headerLen > 255 || off+4 > len(req) || labels == 0 {
		return 0, 0
	}
	qtype = binary.BigEndian.Uint16(req[off:])
	if binary.BigEndian.Uint16(req[off+2:]) != dns.ClassINET {
		return 0, 0
	}
	off += 4

	// The OPT record, if any: root name, version 0, and only options the
	// full path's unpacking cannot reject, well framed: anything else gets
	// its rcode (FORMERR, BADVERS) there.
	edns, do, size := false, false, dns.MinMsgSize
	if h.Arcount == 1 {
		if off+11 > len(req) || req[off] != 0 || binary.BigEndian.Uint16(req[off+1:]) != dns.TypeOPT || req[off+6] != 0 {
			return 0, 0 // not an OPT record, or EDNS version > 0 (BADVERS)
		}
		edns = true
		size = min(max(int(binary.BigEndian.Uint16(req[off+3:])), dns.MinMsgSize), maxUDPSize)
		do = req[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(req[off+9:]))
		off += 11
		if off+rdlen != len(req) || !plainOptions(req[off:off+rdlen]) {
			return 0, 0 // trailing bytes, options running past the end, or options to look at
		}
		off += rdlen
	}
	if off != len(req) {
		return 0, 0 // trailing bytes
	}

	// The part of the zone: the label above the zone's own.
	keyLen := nameEnd - headerLen // of the name in wire form
	name := text[:keyLen-1]
	zoneAt := len(name) - len(s.zone)
	if zoneAt < 0 || string(name[zoneAt:]) != s.zone || (zoneAt > 0 && name[zoneAt-1] != '.') {
		return 0, 0 // not in the zone: nothing packed
	}
	var label []byte
	if i := labels - s.zoneLabels - 1; i >= 0 {
		label = name[starts[i] : zoneAt-1]
	}
	part := s.parts[string(label)]
	if part == nil {
		return 0, 0
	}
	nd := part.names[string(name)]
	if nd == nil {
		return 0, 0
	}
	var p *packed
	var rrs []dns.RR // the RRset whose address goes at addrAt
	switch qtype {
	case dns.TypeA:
		p, rrs = nd.fastA, nd.a
	case dns.TypeAAAA:
		p, rrs = nd.fastAAAA, nd.aaaa
	case dns.TypeSRV:
		p = nd.fastSRV
	}
	if p == nil {
		return 0, 0
	}
	ans, opt := p.pick(edns)
	if tcp {
		size = dns.MaxMsgSize
		if ans != nil && (qtype == dns.TypeSRV || ans[offFlags]&(flagTC>>8) != 0) {
			// Cut for UDP: the whole answer, packed on the first TCP
			// query for it. An A or AAAA answer without TC is the same
			// over TCP; an SRV answer may have lost its additional
			// records to fit in UDP, which sets no TC (RFC 2181 9).
			if p, rrs = s.fullPacked(nd, name, keyLen, qtype), nil; p == nil {
				return 0, 0
			}
			ans, opt = p.pick(edns)
		}
	}
	if ans == nil {
		return 0, 0
	}
	length := len(ans)
	if opt {
		length += len(optRR)
	}
	if length > size || length > len(out) {
		return 0, 0
	}
	// For a name asked in mixed case, the full path writes the owner names
	// in lower case once in full, since miekg/dns compresses them only
	// against a name spelt alike: its answer is up to a name longer, and
	// where that no longer fits it keeps fewer records. Leave the rare
	// close calls and cut answers to it, so that the paths agree.
	if mixed && (ans[offFlags]&(flagTC>>8) != 0 || length+keyLen > size) {
		return 0, 0
	}
	var addr []byte
	if p.addrAt > 0 {
		if len(rrs) == 1 {
			switch rr := rrs[0].(type) {
			case *dns.A:
				addr = rr.A
			case *dns.AAAA:
				addr = rr.AAAA
			}
		}
		if p.addrAt+len(addr) != len(ans) {
			return 0, 0 // cannot be: share checked it
		}
	}
	n = copy(out, ans)
	copy(out[p.addrAt:], addr)
	if opt {
		n += copy(out[n:], optRR[:])
		binary.BigEndian.PutUint16(out[offARCount:], binary.BigEndian.Uint16(out[offARCount:])+1)
	}
	binary.BigEndian.PutUint16(out[offID:], h.Id)
	binary.BigEndian.PutUint16(out[offFlags:], binary.BigEndian.Uint16(out[offFlags:])|h.Bits&(flagRD|flagCD))
	copy(out[headerLen:nameEnd], req[headerLen:nameEnd]) // the question as asked, letter case included
	if p.serialAt > 0 {
		binary.BigEndian.PutUint32(out[p.serialAt:], s.serial) // packed for an older snapshot, maybe
	}
	if do {
		out[n-4] |= 0x80 // DO, in the OPT record's TTL (RFC 3225)
	}
	return n, qtype
}

// pick returns one of p's answers, chosen at random: the plain ones, or
// with edns the EDNS ones; opt says the answer is a plain one, to which
// optRR is to be added. nil when there is none.
func (p *packed) pick(edns bool) (ans []byte, opt bool) {
	variants := p.plain
	if edns {
		variants, opt = p.edns, p.edns == nil
		if opt {
			variants = p.plain
		}
	}
	if len(variants) == 0 {
		return nil, false
	}
	return variants[rand.IntN(len(variants))], opt
}

// fullKey is a node and type whose answer over TCP may not be its UDP one.
type fullKey struct {
	node  *node
	qtype uint16
}

// fullPacked returns the answers over TCP to name (in lower case, its
// text form without escapes), whose node is nd and whose wire form is
// nameLen long, and qtype, where its UDP answers may be cut: packed on the
// first query for them and kept with the snapshot. Packing them with the
// rest of a build would make every change of a large cluster slower for
// the few clients that ask over TCP, and for the service names alone.
// nil when the answer is too large even for TCP: the slow path cuts it.
func (s *Snapshot) fullPacked(nd *node, name []byte, nameLen int, qtype uint16) *packed {
	k := fullKey{nd, qtype}
	for {
		have := s.full.Load()
		if have != nil {
			if p, ok := (*have)[k]; ok {
				return p
			}
		}
		var p *packed
		// Too many records to fit in any message: no packing to learn it.
		if records := len(nd.rrset(qtype)); records*minLen(qtype) <= dns.MaxMsgSize {
			p = s.packOne(&interner{}, string(name), nameLen, qtype, nd.shuffle && records > 1, true)
		}
		if p != nil && (len(p.plain) == 0 || p.plain[0][offFlags]&(flagTC>>8) != 0) {
			p = nil
		}
		next := make(map[fullKey]*packed, 1)
		if have != nil {
			maps.Copy(next, *have)
		}
		next[k] = p
		if s.full.CompareAndSwap(have, &next) {
			return p
		}
	}
}

// minLen is the shortest record of qtype, A, AAAA or SRV, in an answer:
// a compressed owner name, type, class, TTL and length, and the data
// (for SRV, a target compressed to a pointer).
func minLen(qtype uint16) int {
	switch qtype {
	case dns.TypeA:
		return 2 + 10 + net.IPv4len
	case dns.TypeAAAA:
		return 2 + 10 + net.IPv6len
	case dns.TypeSRV:
		return 2 + 10 + 6 + 2
	}
	return minRRLen
}

// plainOptions reports whether EDNS option data is well framed and holds
// only options that need no answer and that miekg/dns unpacks whatever
// their content (cookies, padding): the common clients send those.
func plainOptions(opts []byte) bool {
	for len(opts) > 0 {
		if len(opts) < 4 {
			return false
		}
		code, n := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if (code != dns.EDNS0COOKIE && code != dns.EDNS0PADDING) || 4+n > len(opts) {
			return false
		}
		opts = opts[4+n:]
	}
	return true
}
