package dnsserver

import (
	"cmp"
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// Zone transfers make peerbridge a hidden primary: BIND, Knot, CoreDNS and
// the like serve the zone as secondaries, AXFR (RFC 5936) or IXFR (RFC
// 1995) over TCP, told of each change by NOTIFY (notify.go). The zone
// transferred is the snapshot's own records, so a secondary serves exactly
// what peerbridge answers: SOA, NS and glue, A, AAAA, SRV, TXT. The PTR
// records are of the reverse zones, which this zone does not hold.

const (
	// xfrMsgSize bounds the uncompressed records of one transfer message;
	// compressed, a message stays well below the 64 KiB TCP limit, and a
	// large zone takes several messages, as RFC 5936 allows.
	xfrMsgSize = 32 << 10
	// maxDiffs bounds the IXFR history: a secondary further behind gets
	// the whole zone.
	maxDiffs = 64
)

// zoneDiff is one serial change, as IXFR sends it.
type zoneDiff struct {
	from, to *dns.SOA
	del, add []dns.RR
}

// xfr is the server's transfer and NOTIFY state.
type xfr struct {
	cfg Transfer
	// secret is miekg/dns's TsigSecret: the key by name, nil without one.
	secret map[string]string

	mu      sync.Mutex
	history []zoneDiff // consecutive, oldest first
	changes int        // records in history

	// kicks has one channel per NOTIFY target, of capacity 1: a pending
	// change.
	kicks []chan struct{}

	transfers                             [2][xfrResults]atomic.Uint64 // by AXFR/IXFR, result
	notifySent, notifyAcked, notifyFailed atomic.Uint64

	// The transfers under way, in all and by client address.
	slots    sync.Mutex
	open     int
	byClient map[netip.Addr]int
	// packed is the last snapshot's AXFR packed, built under packMu.
	packMu sync.Mutex
	packed *packedZone
	// full is the last snapshot's AXFR records, which concurrent transfers
	// of it share rather than each building its own.
	full atomic.Pointer[fullZone]
}

// fullZone is a snapshot's records as AXFR sends them.
type fullZone struct {
	snap *Snapshot
	rrs  []dns.RR
}

func newXfr(cfg Transfer) *xfr {
	cfg.MaxTransfers = cmp.Or(max(cfg.MaxTransfers, 0), DefaultMaxTransfers)
	cfg.MaxTransfersPerClient = cmp.Or(max(cfg.MaxTransfersPerClient, 0), DefaultMaxTransfersPerClient)
	x := &xfr{cfg: cfg, byClient: map[netip.Addr]int{}}
	if cfg.Key != nil {
		x.secret = map[string]string{cfg.Key.Name: cfg.Key.Secret}
	}
	for range cfg.Notify {
		x.kicks = append(x.kicks, make(chan struct{}, 1))
	}
	return x
}

// changed records the change from prev to next for IXFR and queues a
// NOTIFY. Publish calls it, serialised.
func (x *xfr) changed(prev, next *Snapshot) {
	if len(x.cfg.Allow) > 0 && prev.serial != next.serial {
		d := diff(prev, next)
		x.mu.Lock()
		x.history = append(x.history, d)
		x.changes += len(d.del) + len(d.add)
		// Changes of twice the zone's records make an IXFR larger than
		// the AXFR it saves, and keep memory in proportion to the zone.
		limit := 2 * next.recordCount()
		for len(x.history) > maxDiffs || (len(x.history) > 1 && x.changes > limit) {
			x.changes -= len(x.history[0].del) + len(x.history[0].add)
			x.history = slices.Delete(x.history, 0, 1)
		}
		x.mu.Unlock()
	}
	x.kick()
}

func (x *xfr) kick() {
	for _, k := range x.kicks {
		select {
		case k <- struct{}{}:
		default: // one is pending already; it will send the newest serial
		}
	}
}

// acquire takes a transfer slot for client, and reports whether there was
// one; release gives it back.
func (x *xfr) acquire(client netip.Addr) (release func(), ok bool) {
	x.slots.Lock()
	defer x.slots.Unlock()
	if x.open >= x.cfg.MaxTransfers || x.byClient[client] >= x.cfg.MaxTransfersPerClient {
		return nil, false
	}
	x.open++
	x.byClient[client]++
	return func() {
		x.slots.Lock()
		defer x.slots.Unlock()
		x.open--
		if x.byClient[client]--; x.byClient[client] == 0 {
			delete(x.byClient, client)
		}
	}, true
}

// records returns snap's AXFR records, built once per snapshot: however
// many transfers of it run, the zone is held once. Only the newest
// snapshot's are kept; a transfer of an older one builds its own.
func (x *xfr) records(snap *Snapshot) []dns.RR {
	if f := x.full.Load(); f != nil && f.snap == snap {
		return f.rrs
	}
	f := &fullZone{snap: snap, rrs: snap.axfr()}
	x.full.Store(f)
	return f.rrs
}

// openTransfers returns how many zone transfers are under way.
func (s *Server) openTransfers() int {
	s.xfr.slots.Lock()
	defer s.xfr.slots.Unlock()
	return s.xfr.open
}

// allowed reports whether addr may transfer the zone.
func (x *xfr) allowed(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	a, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range x.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// soa is the snapshot's SOA record.
func (s *Snapshot) soa() *dns.SOA { return s.lookup(s.zone).get().soa[0].(*dns.SOA) }

// recordCount is how many records zoneRecords returns.
func (s *Snapshot) recordCount() int {
	n := 0
	for _, p := range s.parts {
		n += p.records
	}
	return n
}

// zoneRecords is the zone's content, the SOA left out, in zone-file order:
// the records that the server answers for names in the zone (the SRV
// targets' addresses of the additional section are the hosts' own A and
// AAAA records, so they appear once).
func (s *Snapshot) zoneRecords() []dns.RR {
	out := make([]dns.RR, 0, s.recordCount())
	for _, name := range s.names() {
		out = s.lookup(name).appendRecords(out)
	}
	return out
}

// appendRecords appends the records of n that zoneRecords returns.
func (n *node) appendRecords(out []dns.RR) []dns.RR {
	for _, rrs := range [][]dns.RR{n.get().ns, n.a, n.aaaa, n.get().srv, n.txt} {
		out = append(out, rrs...)
	}
	return out
}

// axfr is the zone as AXFR sends it: SOA, records, SOA.
func (s *Snapshot) axfr() []dns.RR {
	soa := s.soa()
	recs := s.zoneRecords()
	out := make([]dns.RR, 0, len(recs)+2)
	out = append(out, soa)
	out = append(out, recs...)
	return append(out, soa)
}

// diff is the change from prev to next. Only the names whose node is not
// the same object in both can differ (build takes unchanged nodes over),
// and of those only the records that are not: the rest compare by their
// text, which holds every field.
func diff(prev, next *Snapshot) zoneDiff {
	d := zoneDiff{from: prev.soa(), to: next.soa()}
	changed := map[string]bool{}
	for _, pair := range [2][2]*Snapshot{{prev, next}, {next, prev}} {
		a, b := pair[0], pair[1]
		for l, pa := range a.parts {
			pb := b.parts[l]
			if pb == pa {
				continue
			}
			for name, n := range pa.names {
				if pb == nil || pb.names[name] != n {
					changed[name] = true
				}
			}
		}
	}
	for _, name := range slices.SortedFunc(maps.Keys(changed), compareNames) {
		var old, cur []dns.RR
		if n := prev.lookup(name); n != nil {
			old = n.appendRecords(nil)
		}
		if n := next.lookup(name); n != nil {
			cur = n.appendRecords(nil)
		}
		d.del = append(d.del, missing(old, cur)...)
		d.add = append(d.add, missing(cur, old)...)
	}
	return d
}

// missing returns the records of a that b has not: not the same object,
// nor one of the same text.
func missing(a, b []dns.RR) []dns.RR {
	in := make(map[dns.RR]bool, len(b))
	for _, rr := range b {
		in[rr] = true
	}
	var cand []dns.RR
	for _, rr := range a {
		if !in[rr] {
			cand = append(cand, rr)
		}
	}
	if len(cand) == 0 {
		return nil
	}
	if len(cand) <= 16 {
		// A change of a few peers in a large RRset: compare them field by
		// field, rather than writing out the text of every record.
		return slices.DeleteFunc(cand, func(rr dns.RR) bool {
			return slices.ContainsFunc(b, func(o dns.RR) bool { return dns.IsDuplicate(rr, o) })
		})
	}
	text := make(map[string]bool, len(b))
	for _, rr := range b {
		text[rr.String()] = true
	}
	var out []dns.RR
	for _, rr := range cand {
		if !text[rr.String()] {
			out = append(out, rr)
		}
	}
	return out
}

// serialAtLeast compares serials as RFC 1982 does: a >= b.
func serialAtLeast(a, b uint32) bool { return bridge.CompareSerial(a, b) >= 0 }

// ixfr answers an IXFR from a secondary at serial have: the single SOA
// when it is current, the changes since when the history reaches back to
// it, else the whole zone (RFC 1995 4).
func (x *xfr) ixfr(snap *Snapshot, have uint32) ([]dns.RR, xfrResult) {
	cur := snap.soa()
	if serialAtLeast(have, cur.Serial) {
		return []dns.RR{cur}, xfrCurrent
	}
	x.mu.Lock()
	history := slices.Clone(x.history)
	x.mu.Unlock()
	start := slices.IndexFunc(history, func(d zoneDiff) bool { return d.from.Serial == have })
	if start < 0 || history[len(history)-1].to.Serial != cur.Serial {
		// Unknown or too old, or a Publish between the snapshot and its
		// diff: the whole zone is always right.
		return x.records(snap), xfrFull
	}
	out := []dns.RR{cur}
	for _, d := range history[start:] {
		out = append(out, d.from)
		out = append(out, d.del...)
		out = append(out, d.to)
		out = append(out, d.add...)
	}
	return append(out, cur), xfrIncremental
}

// serveXFR answers over TCP what answer does not: zone transfers, and,
// when a TSIG key is set, signed queries (secondaries sign their SOA
// queries). It reports whether it answered req.
func (s *Server) serveXFR(w dns.ResponseWriter, req *dns.Msg) bool {
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); !tcp || len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		return false
	}
	qtype := req.Question[0].Qtype
	transfer := qtype == dns.TypeAXFR || qtype == dns.TypeIXFR
	tsig := req.IsTsig()
	key := s.xfr.cfg.Key
	if !transfer && (tsig == nil || key == nil) {
		return false
	}
	kind := 0
	if qtype == dns.TypeIXFR {
		kind = 1
	}
	reply := func(m *dns.Msg, result xfrResult) {
		if transfer {
			s.xfr.transfers[kind][result].Add(1)
		}
		s.stats.count(true, qtype, m.Rcode, m.Truncated)
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("dns reply not sent", "remote", w.RemoteAddr().String(), "error", err)
		}
	}
	remote := w.RemoteAddr().String()
	if transfer && !s.xfr.allowed(w.RemoteAddr()) {
		s.clientLog.warn("zone transfer refused: client not in PEERBRIDGE_DNS_TRANSFER_ALLOW", remote, "type", dns.TypeToString[qtype])
		reply(rcodeReply(req, dns.RcodeRefused), xfrRefused)
		return true
	}
	if tsig != nil && key != nil {
		if code := tsigError(w.TsigStatus(), tsig, key); code != dns.RcodeSuccess {
			s.clientLog.warn("dns request with a bad TSIG", remote, "type", dns.TypeToString[qtype],
				"key", tsig.Hdr.Name, "error", dns.RcodeToString[code])
			reply(notAuth(req, tsig, code), xfrNotAuth)
			return true
		}
	}
	if !transfer {
		m := s.snap.Load().answer(req, true)
		m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
		reply(m, 0)
		return true
	}
	if key != nil && tsig == nil {
		s.clientLog.warn("zone transfer refused: not TSIG-signed", remote, "type", dns.TypeToString[qtype])
		reply(rcodeReply(req, dns.RcodeRefused), xfrRefused)
		return true
	}
	snap := s.snap.Load()
	if !dns.IsSubDomain(snap.zone, req.Question[0].Name) || dns.CountLabel(req.Question[0].Name) != dns.CountLabel(snap.zone) {
		// RFC 5936 2.2.1: not a zone this server is authoritative for.
		reply(signed(rcodeReply(req, dns.RcodeNotAuth), tsig), xfrRefused)
		return true
	}

	client, _ := netip.AddrFromSlice(w.RemoteAddr().(*net.TCPAddr).IP)
	release, ok := s.xfr.acquire(client.Unmap())
	if !ok {
		s.log.Warn("zone transfer refused: too many under way", "remote", remote, "type", dns.TypeToString[qtype],
			"max", s.xfr.cfg.MaxTransfers, "max_per_client", s.xfr.cfg.MaxTransfersPerClient)
		reply(signed(rcodeReply(req, dns.RcodeRefused), tsig), xfrRefused)
		return true
	}
	defer release()

	start := time.Now()
	var rrs []dns.RR
	result := xfrFull
	if qtype == dns.TypeAXFR {
		rrs = s.xfr.records(snap)
	} else {
		var have *dns.SOA
		for _, rr := range req.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				have = soa
			}
		}
		if have == nil {
			reply(signed(rcodeReply(req, dns.RcodeFormatError), tsig), xfrFailed)
			return true
		}
		rrs, result = s.xfr.ixfr(snap, have.Serial)
	}
	var msgs int
	var err error
	if packed := s.xfr.packedFor(snap, req, qtype, result); packed != nil {
		msgs, err = writePacked(w, req, packed)
	} else {
		msgs, err = writeTransfer(w, req, rrs)
	}
	if err != nil {
		s.xfr.transfers[kind][xfrFailed].Add(1)
		s.clientLog.warn("zone transfer failed", remote, "type", dns.TypeToString[qtype], "error", err)
		return true
	}
	s.xfr.transfers[kind][result].Add(1)
	s.stats.count(true, qtype, dns.RcodeSuccess, false)
	s.log.Debug("zone transferred", "remote", remote, "type", dns.TypeToString[qtype], "result", result.String(),
		"serial", snap.serial, "records", len(rrs), "messages", msgs, "duration", time.Since(start))
	return true
}

// packedFor returns snap's AXFR packed once into messages that transfers
// of it share, when req can take them: a whole zone, unsigned, asked for
// by the zone's own name. Packing a large zone costs far more CPU than
// sending it, and every transfer packing its own took the CPU that UDP
// queries needed. Otherwise nil: the transfer packs its own messages.
func (x *xfr) packedFor(snap *Snapshot, req *dns.Msg, qtype uint16, result xfrResult) [][]byte {
	q := req.Question[0]
	if result != xfrFull || req.IsTsig() != nil || q.Name != snap.zone || q.Qclass != dns.ClassINET {
		return nil
	}
	x.packMu.Lock()
	defer x.packMu.Unlock()
	if x.packed != nil && x.packed.snap == snap && x.packed.qtype == qtype {
		return x.packed.msgs
	}
	tmpl := new(dns.Msg)
	tmpl.Id = 0
	tmpl.Question = []dns.Question{{Name: snap.zone, Qtype: qtype, Qclass: dns.ClassINET}}
	var msgs [][]byte
	for _, m := range transferMessages(tmpl, x.records(snap)) {
		wire, err := m.Pack()
		if err != nil {
			return nil
		}
		msgs = append(msgs, wire)
	}
	x.packed = &packedZone{snap: snap, qtype: qtype, msgs: msgs}
	return msgs
}

// packedZone is a snapshot's AXFR as packed messages, with ID 0, no RD or
// CD flag and no OPT record: writePacked sets those per request.
type packedZone struct {
	snap  *Snapshot
	qtype uint16
	msgs  [][]byte
}

// writePacked sends the packed messages as the answer to req: its ID, its
// RD and CD flags, and an OPT record when it had one, as SetReply and
// withOPT would make them.
func writePacked(w dns.ResponseWriter, req *dns.Msg, msgs [][]byte) (int, error) {
	var buf []byte
	opt := req.IsEdns0()
	for i, wire := range msgs {
		buf = append(buf[:0], wire...)
		binary.BigEndian.PutUint16(buf[0:], req.Id)
		if req.RecursionDesired {
			buf[2] |= 0x01
		}
		if req.CheckingDisabled {
			buf[3] |= 0x10
		}
		if opt != nil {
			// Appended last: compression pointers only point back.
			binary.BigEndian.PutUint16(buf[10:], binary.BigEndian.Uint16(buf[10:])+1)
			var flags uint16
			if opt.Do() {
				flags = 0x8000
			}
			buf = append(buf, 0) // the root name
			buf = binary.BigEndian.AppendUint16(buf, dns.TypeOPT)
			buf = binary.BigEndian.AppendUint16(buf, maxUDPSize)
			buf = append(buf, 0, 0) // extended rcode, version
			buf = binary.BigEndian.AppendUint16(buf, flags)
			buf = binary.BigEndian.AppendUint16(buf, 0) // no options
		}
		if _, err := w.Write(buf); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

// writeTransfer sends rrs in as many messages as they need, each signed
// when the request was: miekg/dns's Transfer.Out, with compression and
// messages filled up to xfrMsgSize rather than one per envelope.
func writeTransfer(w dns.ResponseWriter, req *dns.Msg, rrs []dns.RR) (int, error) {
	tsig := req.IsTsig()
	msgs := transferMessages(req, rrs)
	for i, m := range msgs {
		if err := w.WriteMsg(signed(m, tsig)); err != nil {
			return i, err
		}
		// RFC 8945 5.3.1: later messages are signed over the timers only.
		w.TsigTimersOnly(true)
	}
	return len(msgs), nil
}

// transferMessages splits rrs into the messages of the answer to req.
func transferMessages(req *dns.Msg, rrs []dns.RR) []*dns.Msg {
	var msgs []*dns.Msg
	for start := 0; start < len(rrs); {
		end, size := start, 0
		for end < len(rrs) && (end == start || size+dns.Len(rrs[end]) <= xfrMsgSize) {
			size += dns.Len(rrs[end])
			end++
		}
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		m.Compress = true
		m.Answer = rrs[start:end]
		withOPT(m, req)
		msgs = append(msgs, m)
		start = end
	}
	return msgs
}

// xfrResult is how a transfer request was answered.
type xfrResult int

const (
	xfrFull        xfrResult = iota // the whole zone
	xfrIncremental                  // IXFR: the changes
	xfrCurrent                      // IXFR: the client is current, one SOA
	xfrRefused                      // client not allowed, unsigned, or not this zone
	xfrNotAuth                      // bad TSIG
	xfrFailed                       // malformed request, or the connection broke
	xfrResults
)

func (r xfrResult) String() string {
	return [...]string{"full", "incremental", "current", "refused", "notauth", "failed"}[r]
}

// TransferCount is the number of transfer requests of one type (AXFR,
// IXFR) answered one way: full, incremental, current, refused, notauth or
// failed.
type TransferCount struct {
	Type, Result string
	Count        uint64
}

// transferCounts returns the transfer counts so far, zeros included.
func (s *Server) transferCounts() []TransferCount {
	var out []TransferCount
	for kind, name := range []string{"AXFR", "IXFR"} {
		for r := range xfrResults {
			// Zeros too: every series exists before its first event.
			out = append(out, TransferCount{Type: name, Result: r.String(), Count: s.xfr.transfers[kind][r].Load()})
		}
	}
	return out
}

// addNameServers adds the apex NS records and, for names inside the zone,
// their glue.
func addNameServers(cfg zoneConfig, names nodes, apex *node) {
	for _, ns := range cfg.ns {
		apex.set().ns = append(apex.set().ns, &dns.NS{Hdr: hdr(cfg.zone, dns.TypeNS, cfg.ttl), Ns: ns.Name})
		if !dns.IsSubDomain(cfg.zone, ns.Name) {
			continue
		}
		n := names.node(cfg.zone, ns.Name)
		for _, a := range ns.Addrs {
			if a.Is4() {
				n.a = append(n.a, addrRR(ns.Name, a.AsSlice(), cfg.ttl))
			} else {
				n.aaaa = append(n.aaaa, addrRR(ns.Name, a.AsSlice(), cfg.ttl))
			}
		}
	}
}

// rcodeReply is the reply to req with rcode and no records.
func rcodeReply(req *dns.Msg, rcode int) *dns.Msg {
	return withOPT(new(dns.Msg).SetRcode(req, rcode), req)
}

// withOPT adds an OPT record to m when req had one (RFC 6891 7), as answer
// does.
func withOPT(m, req *dns.Msg) *dns.Msg {
	if ro := req.IsEdns0(); ro != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(maxUDPSize)
		opt.SetDo(ro.Do())
		m.Extra = append(m.Extra, opt)
	}
	return m
}
