package dnsserver

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The message header in wire form (RFC 1035 4.1.1): six 16-bit fields at
// fixed offsets. Both UDP paths read it with parseHeader, so that they
// agree on what a query is.
const (
	offID      = 0
	offFlags   = 2
	offQDCount = 4
	offANCount = 6
	offNSCount = 8
	offARCount = 10
	headerLen  = 12
)

// Bits of the flags field.
const (
	flagQR      = 1 << 15 // a response
	maskOpcode  = 0xF << opcodeShift
	opcodeShift = 11
	flagTC      = 1 << 9
	flagRD      = 1 << 8
	flagCD      = 1 << 4
)

// parseHeader reads the header of a message; false when there are fewer
// than 12 bytes. It allocates nothing: the fast path calls it per query.
func parseHeader(wire []byte) (h dns.Header, ok bool) {
	if len(wire) < headerLen {
		return h, false
	}
	be := binary.BigEndian
	return dns.Header{
		Id:      be.Uint16(wire[offID:]),
		Bits:    be.Uint16(wire[offFlags:]),
		Qdcount: be.Uint16(wire[offQDCount:]),
		Ancount: be.Uint16(wire[offANCount:]),
		Nscount: be.Uint16(wire[offNSCount:]),
		Arcount: be.Uint16(wire[offARCount:]),
	}, true
}

// opcode is the header's opcode.
func opcode(h dns.Header) int { return int(h.Bits&maskOpcode) >> opcodeShift }
