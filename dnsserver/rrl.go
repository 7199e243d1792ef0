package dnsserver

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// Response rate limiting, as BIND's and Knot's RRL: an authoritative
// server on a shared network must not be a reflector that multiplies a
// spoofed source's traffic. Every UDP answer to one client network (/24 for
// IPv4, /56 for IPv6, as BIND's defaults) spends a token; past the rate,
// every Slip-th answer goes out truncated and empty, so that a real client
// behind that network retries over TCP (which is never limited: a spoofed
// source cannot finish a handshake), and the rest are dropped.

// RateLimit configures response rate limiting of UDP answers.
type RateLimit struct {
	// PerSecond is how many answers per second one client network gets;
	// 0 turns the limit off.
	PerSecond int
	// Slip: every Slip-th answer over the limit goes out truncated (TC)
	// instead of being dropped; 0 drops them all, 1 truncates them all.
	Slip int
}

// MaxRateLimit and MaxSlip bound the settings (BIND allows a slip of at
// most 10, too).
const (
	MaxRateLimit = 1_000_000
	MaxSlip      = 10
)

// Validate reports settings out of range.
func (r RateLimit) Validate() error {
	var errs []error
	if r.PerSecond < 0 || r.PerSecond > MaxRateLimit {
		errs = append(errs, bridge.Invalid("DNS_RATE_LIMIT", "%d must be from 0 (off) to %d answers per second", r.PerSecond, MaxRateLimit))
	}
	if r.Slip < 0 || r.Slip > MaxSlip {
		errs = append(errs, bridge.Invalid("DNS_RATE_LIMIT_SLIP", "%d must be from 0 (drop all over the limit) to %d", r.Slip, MaxSlip))
	}
	return errors.Join(errs...)
}

// rrlSlots is how many client networks the limiter tracks at once. The
// table is fixed: a flood from spoofed sources in ever new networks
// reuses slots instead of growing memory (about 32 bytes a slot). A
// network whose slot was taken over starts with a full bucket again,
// which errs towards answering.
const rrlSlots = 1 << 14

// rrlLocks stripes the table's locks: the UDP sockets' goroutines (one per
// socket, one socket per core) rarely meet on one stripe.
const rrlLocks = 64

// rrlAction is the limiter's verdict on one answer.
type rrlAction uint8

const (
	rrlAnswer rrlAction = iota
	rrlSlip
	rrlDrop
)

// limiter is the RRL table. Each slot runs GCRA (the generic cell rate
// algorithm): tat is the theoretical arrival time of the next answer; an
// answer is allowed while tat is at most one second (the burst) ahead of
// now, and pushes it one interval further.
type limiter struct {
	interval int64 // nanoseconds per answer
	slip     uint32
	epoch    time.Time // now is time since epoch: monotonic, never jumps
	locks    [rrlLocks]sync.Mutex
	slots    []rrlSlot

	slipped, dropped atomic.Uint64
}

type rrlSlot struct {
	key  uint64
	tat  int64
	over uint32 // answers over the limit, for every slip-th one
}

// newLimiter returns nil when the limit is off, so that the UDP path pays
// one nil check.
func newLimiter(r RateLimit) *limiter {
	if r.PerSecond <= 0 {
		return nil
	}
	return &limiter{
		interval: int64(time.Second) / int64(r.PerSecond),
		slip:     uint32(r.Slip),
		epoch:    time.Now(),
		slots:    make([]rrlSlot, rrlSlots),
	}
}

// now is the limiter's clock, read once per batch of datagrams.
func (l *limiter) now() int64 { return int64(time.Since(l.epoch)) }

// networkKey maps a client address to its network: the /24 or /56 prefix,
// tagged with the family so that the two never share a key. ok is false
// for an address that is neither.
func networkKey(addr net.Addr) (key uint64, ok bool) {
	ua, isUDP := addr.(*net.UDPAddr)
	if !isUDP {
		return 0, false
	}
	if ip4 := ua.IP.To4(); ip4 != nil {
		return uint64(ip4[0])<<32 | uint64(ip4[1])<<24 | uint64(ip4[2])<<16 | 4, true
	}
	if ip6 := ua.IP.To16(); ip6 != nil {
		var k uint64
		for _, b := range ip6[:7] {
			k = k<<8 | uint64(b)
		}
		return k<<8 | 6, true
	}
	return 0, false
}

// take decides one answer to addr at time now.
func (l *limiter) take(addr net.Addr, now int64) rrlAction {
	key, ok := networkKey(addr)
	if !ok {
		return rrlAnswer
	}
	i := (key * 0x9E3779B97F4A7C15) >> (64 - 14) // Fibonacci hashing onto rrlSlots
	mu := &l.locks[i%rrlLocks]
	mu.Lock()
	s := &l.slots[i]
	if s.key != key {
		*s = rrlSlot{key: key, tat: now}
	}
	if s.tat < now {
		s.tat = now
	}
	if s.tat-now < int64(time.Second) {
		s.tat += l.interval
		mu.Unlock()
		return rrlAnswer
	}
	s.over++
	over := s.over
	mu.Unlock()
	if l.slip > 0 && over%l.slip == 0 {
		l.slipped.Add(1)
		return rrlSlip
	}
	l.dropped.Add(1)
	return rrlDrop
}

// slipReply writes into buf the truncated, empty reply to the query req:
// its header and question, QR and TC set, no records. It returns 0 for a
// query whose question it cannot find, which is then dropped.
func slipReply(req, buf []byte) int {
	if len(req) < headerLen || req[4] != 0 || req[5] != 1 { // exactly one question
		return 0
	}
	off := headerLen
	for {
		if off >= len(req) {
			return 0
		}
		l := int(req[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 { // a compression pointer has no place in a query's only name
			return 0
		}
		off += 1 + l
	}
	off += 4 // type and class
	if off > len(req) || off > len(buf) {
		return 0
	}
	n := copy(buf, req[:off])
	buf[2] = buf[2]&0x79 | 0x80 | 0x02 // QR and TC; the opcode and RD kept; AA off: nothing is answered
	buf[3] = 0                         // RA, AD and CD off, NOERROR
	for i := 6; i < headerLen; i++ {   // ANCOUNT, NSCOUNT, ARCOUNT
		buf[i] = 0
	}
	return n
}

// rateLimited returns how many UDP answers the rate limit truncated
// (slip) and dropped since start.
func (s *Server) rateLimited() (slipped, dropped uint64) {
	if s.rrl == nil {
		return 0, 0
	}
	return s.rrl.slipped.Load(), s.rrl.dropped.Load()
}
