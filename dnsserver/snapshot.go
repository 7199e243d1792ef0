package dnsserver

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// SOA timers. Secondaries learn of changes by NOTIFY, so refresh and retry
// are only the fallback; the minimum is the negative TTL (RFC 2308).
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// zoneConfig is what a snapshot needs besides the peer sets.
type zoneConfig struct {
	zone   string // lower case, fully qualified
	ttl    uint32
	negTTL uint32
	ns     []NameServer // at least one; the first is the SOA's MNAME
	// fixedOrder turns the random order of service answers off, so that
	// tests can compare the two query paths byte for byte.
	fixedOrder bool
	// services are the configured service names (Config.Services).
	services []string
}

// Snapshot holds every record the server answers with. It is built off the
// query path, never modified after, and swapped in whole, so a query sees
// one consistent set of records without taking a lock.
//
// Its names are split by the label right below the apex (the service name
// for a topology's records), so that a change of one topology builds only
// that topology's part: the others, and within it the records and packed
// answers of every peer that did not change, are taken over from the
// previous snapshot. Sharing is safe because nothing in a snapshot is ever
// modified.
type Snapshot struct {
	zone   string
	serial uint32
	// zoneLabels is how many labels the zone has: the fast path finds a
	// name's part with it.
	zoneLabels int
	// negSOA is the SOA for the authority section of negative answers,
	// with the TTL RFC 2308 asks for: min(SOA TTL, SOA minimum).
	negSOA []dns.RR
	// parts holds every name that exists in the zone, empty non-terminals
	// included, by the label below the apex ("" for the apex itself).
	parts map[string]*part
	// topos are the topologies' records, in service name order: the
	// reverse names, and what the next snapshot may reuse.
	topos []*topology
	// tooLong lists the peer owner names left out for being longer than
	// a name may be.
	tooLong []string
	// pending holds the configured service names without a set yet,
	// whose names answer SERVFAIL.
	pending map[string]bool
	// full holds the answers over TCP that are not the UDP ones, packed
	// as they are first asked for (fullPacked); replaced whole, never
	// written.
	full atomic.Pointer[map[fullKey]*packed]
}

// part is the names under one label below the apex.
type part struct {
	// names holds the nodes by lower-case FQDN.
	names map[string]*node
	// records is how many records zoneRecords returns for the part.
	records int
}

// node is one owner name's records. Every slice is clipped, so that an
// append on the query path copies instead of writing into the snapshot.
//
// A topology has a node per peer, and a peer's name has address and TXT
// records only: the other RRsets, which few names have, are behind more,
// which keeps a peer's node at half the size.
type node struct {
	a, aaaa, txt []dns.RR
	more         *nodeMore // nil: none of them
	// fastA, fastAAAA and fastSRV are the packed answers of the fast path
	// (pack), nil for none.
	fastA, fastAAAA, fastSRV *packed
	// peer is the peer whose own name this is, whose records the next
	// build may take over; nil for other names.
	peer *peerRecords
	// shuffle marks service names, whose answers are served in random order
	// so that clients spread over peers.
	shuffle bool
}

// nodeMore is the RRsets of a node that a peer's own name never has.
type nodeMore struct {
	soa, ns, srv, ptr []dns.RR
	// extra is the A/AAAA of the SRV targets for the additional section.
	extra []dns.RR
}

// noMore is the empty nodeMore of every node without one. Never written.
var noMore nodeMore

// get returns n's rarer RRsets, for reading.
func (n *node) get() *nodeMore {
	if n.more == nil {
		return &noMore
	}
	return n.more
}

// set returns n's rarer RRsets, for writing while n is built.
func (n *node) set() *nodeMore {
	if n.more == nil {
		n.more = &nodeMore{}
	}
	return n.more
}

func (n *node) rrset(qtype uint16) []dns.RR {
	switch qtype {
	case dns.TypeA:
		return n.a
	case dns.TypeAAAA:
		return n.aaaa
	case dns.TypeSRV:
		return n.get().srv
	case dns.TypeTXT:
		return n.txt
	case dns.TypePTR:
		return n.get().ptr
	case dns.TypeSOA:
		return n.get().soa
	case dns.TypeNS:
		return n.get().ns
	case dns.TypeANY:
		// RFC 8482: one RRset is a complete answer to ANY.
		m := n.get()
		for _, rrs := range [][]dns.RR{m.soa, n.a, n.aaaa, m.srv, n.txt, m.ptr} {
			if len(rrs) > 0 {
				return rrs
			}
		}
	}
	return nil
}

// Serial is the SOA serial of the snapshot.
func (s *Snapshot) Serial() uint32 { return s.serial }

// lookup returns the node of name, which must be lower case, or nil.
func (s *Snapshot) lookup(name string) *node {
	p := s.parts[partLabel(s.zone, name)]
	if p == nil {
		return nil
	}
	return p.names[name]
}

// partLabel is the label below the apex that name, inside zone, falls
// under: "" for the apex.
func partLabel(zone, name string) string {
	rest, ok := strings.CutSuffix(name, zone)
	if !ok || rest == "" {
		return ""
	}
	rest = strings.TrimSuffix(rest, ".")
	return rest[strings.LastIndexByte(rest, '.')+1:]
}

// build makes the snapshot for sets, which must be normalized. It takes
// over from prev, which may be nil, whatever did not change.
func build(cfg zoneConfig, serial uint32, sets []bridge.Set, prev *Snapshot) *Snapshot {
	return buildGen(cfg, serial, sets, nil, prev)
}

// buildGen is build knowing each set's generation (gens, by topology;
// nil: none known): a topology whose set has the generation its records
// were built from is taken over whole.
func buildGen(cfg zoneConfig, serial uint32, sets []bridge.Set, gens map[string]uint64, prev *Snapshot) *Snapshot {
	s := &Snapshot{
		zone:       cfg.zone,
		serial:     serial,
		zoneLabels: dns.CountLabel(cfg.zone),
		parts:      map[string]*part{},
	}
	nsName := cfg.ns[0].Name
	soa := func(ttl uint32) *dns.SOA {
		return &dns.SOA{
			Hdr: hdr(cfg.zone, dns.TypeSOA, ttl),
			Ns:  nsName, Mbox: "hostmaster." + cfg.zone,
			Serial: serial, Refresh: soaRefresh, Retry: soaRetry, Expire: soaExpire,
			Minttl: cfg.negTTL,
		}
	}
	// The apex and the name servers' glue: a few names, built anew.
	top := nodes{}
	apex := top.node(cfg.zone, cfg.zone)
	apex.set().soa = []dns.RR{soa(cfg.ttl)}
	s.negSOA = []dns.RR{soa(min(cfg.ttl, cfg.negTTL))}
	addNameServers(cfg, top, apex)

	slices.SortFunc(sets, func(a, b bridge.Set) int {
		return cmp.Or(cmp.Compare(a.Service.Name, b.Service.Name), cmp.Compare(a.Service.Topology, b.Service.Topology))
	})
	var old map[string]*topology
	if prev != nil {
		old = make(map[string]*topology, len(prev.topos))
		for _, t := range prev.topos {
			old[t.set.Service.Topology] = t
		}
	}
	// Each part's sources: the top names under its label, and the
	// topologies of that service name.
	tops := map[string]nodes{}
	for name, n := range top {
		l := partLabel(cfg.zone, name)
		if tops[l] == nil {
			tops[l] = nodes{}
		}
		tops[l][name] = n
	}
	byLabel := map[string][]*topology{}
	in := newInterner()
	for _, set := range sets {
		t := old[set.Service.Topology]
		if gen := gens[set.Service.Topology]; t == nil || gen == 0 || t.gen != gen {
			t = s.buildTopology(cfg, set, t, in)
			t.gen = gen
		}
		s.topos = append(s.topos, t)
		s.tooLong = append(s.tooLong, t.tooLong...)
		byLabel[set.Service.Name] = append(byLabel[set.Service.Name], t)
	}
	for l, ts := range byLabel {
		if len(ts) == 1 && tops[l] == nil {
			s.parts[l] = &ts[0].part // the common case: taken over whole
			continue
		}
		// A name server or another topology under the same label: merge
		// their nodes, then pack the part's answers anew. Rare, so no
		// reuse.
		merged := nodes{}
		merged.merge(tops[l])
		delete(tops, l)
		for _, t := range ts {
			merged.merge(t.part.names)
		}
		s.parts[l] = s.newPart(merged, in)
	}
	for l, names := range tops {
		s.parts[l] = s.newPart(names, in)
	}
	for _, name := range cfg.services {
		if byLabel[name] == nil {
			if s.pending == nil {
				s.pending = map[string]bool{}
			}
			s.pending[name] = true
		}
	}
	return s
}

// newPart packs every answer of names for the fast path.
func (s *Snapshot) newPart(names nodes, in *interner) *part {
	p := &part{names: names}
	// answer looks the names up through s: make the part visible to it
	// while packing. Nothing reads s before build returns it.
	for name, n := range names {
		s.parts[partLabel(s.zone, name)] = p
		n.clip()
	}
	for name, n := range names {
		p.records += n.records()
		s.pack(name, n, in)
	}
	return p
}

// records is how many records of n zoneRecords returns.
func (n *node) records() int {
	return len(n.get().ns) + len(n.a) + len(n.aaaa) + len(n.get().srv) + len(n.txt)
}

// nodes is a set of names and their nodes.
type nodes map[string]*node

// node returns the node for name, creating it and the empty non-terminals
// between it and the apex of zone, which must answer NODATA rather than
// NXDOMAIN (RFC 8020). The apex itself is not created: it is in the part
// of its own.
func (ns nodes) node(zone, name string) *node {
	if n, ok := ns[name]; ok {
		return n
	}
	n := &node{}
	ns[name] = n
	if name != zone {
		if _, parent, ok := strings.Cut(name, "."); ok && parent != zone && dns.IsSubDomain(zone, parent) {
			ns.node(zone, parent)
		}
	}
	return n
}

// merge adds the records of from to ns, after those of the same name
// already there. The nodes of from are not modified.
func (ns nodes) merge(from nodes) {
	for name, f := range from {
		n, ok := ns[name]
		if !ok {
			n = &node{}
			ns[name] = n
		}
		pairs := [][2]*[]dns.RR{{&n.a, &f.a}, {&n.aaaa, &f.aaaa}, {&n.txt, &f.txt}}
		if f.more != nil {
			nm, fm := n.set(), f.more
			pairs = append(pairs, [][2]*[]dns.RR{{&nm.soa, &fm.soa}, {&nm.ns, &fm.ns}, {&nm.srv, &fm.srv},
				{&nm.ptr, &fm.ptr}, {&nm.extra, &fm.extra}}...)
		}
		for _, rrs := range pairs {
			*rrs[0] = append(slices.Clip(*rrs[0]), *rrs[1]...)
		}
		n.shuffle = n.shuffle || f.shuffle
		n.fastA, n.fastAAAA, n.fastSRV = nil, nil, nil // packed anew
	}
}

// topology is the records of one topology's set: its part of the zone,
// its reverse names, and per peer what the next build may take over.
type topology struct {
	set bridge.Set
	// gen is the generation of set (Server.gens), 0 when unknown.
	gen  uint64
	part part
	// reverse holds, by address, the first peer with it, and reverseMore
	// the others in set order (tasks sharing a host; nil without any):
	// their PTR records are made when asked for (ptrs), rare next to the
	// memory a record and a reverse name per peer would take.
	reverse     map[netip.Addr]*peerRecords
	reverseMore map[netip.Addr][]*peerRecords
	tooLong     []string
}

// peerRecords is one published peer's records, built from its owner name,
// ID, addresses and port (and the topology's service and the zone's TTL, which
// a topology's records are rebuilt for). The next build finds it through
// its node's peer.
//
// It holds nothing besides the records, which say the peer's ID (TXT),
// addresses (in set order under the service name) and port (SRV).
type peerRecords struct {
	node // its own name's, in the part's names
	// svcAddrs are its A and AAAA records under the service name, in the
	// order of its addresses; srv is its SRV record there, whose target is
	// its own name, and port the service's PortFor it.
	svcAddrs []dns.RR
	srv      *dns.SRV
	// named is its SRV record under _<port name>._tcp, nil without one.
	named *dns.SRV
}

// host is the peer's own name.
func (pr *peerRecords) host() string { return pr.srv.Target }

// id is the peer's ID, from its last TXT record; "" without one.
func (pr *peerRecords) id() string {
	if len(pr.txt) > 0 {
		if t, ok := pr.txt[len(pr.txt)-1].(*dns.TXT); ok && len(t.Txt) == 1 {
			id, _ := strings.CutPrefix(t.Txt[0], "id=")
			if len(id) < len(t.Txt[0]) {
				return id
			}
		}
	}
	return ""
}

// sameAs reports whether pr are p's records; svc is the service of both
// (a changed service rebuilds every peer's), and decides p's port.
func (pr *peerRecords) sameAs(svc bridge.Service, p bridge.Peer) bool {
	if pr == nil || pr.srv.Port != svc.PortFor(p) || pr.id() != p.ID || len(pr.svcAddrs) != len(p.Addrs) {
		return false
	}
	for i, addr := range p.Addrs {
		// An address with a zone (in the node= TXT records only) is
		// never the same: rare enough to rebuild.
		ip, ok := rrAddr(pr.svcAddrs[i])
		if a, _ := netip.AddrFromSlice(ip); !ok || addr.Zone() != "" || a != addr {
			return false
		}
	}
	return true
}

// buildTopology makes the records of set, taking over from prev (nil for
// none) every peer whose records are the same. A service that changed
// changes every record, so then nothing is taken over.
func (s *Snapshot) buildTopology(cfg zoneConfig, set bridge.Set, prev *topology, in *interner) *topology {
	if prev != nil && prev.set.Service != set.Service {
		prev = nil
	}
	published := set.PublishedCount()
	t := &topology{
		set:     set,
		part:    part{names: make(nodes, published+4)},
		reverse: make(map[netip.Addr]*peerRecords, published),
	}
	names := nodes(t.part.names)
	svcName := set.Service.Name + "." + cfg.zone
	svc := names.node(cfg.zone, svcName)
	svc.shuffle = !cfg.fixedOrder
	svc.a = make([]dns.RR, 0, published)
	svcSRV := make([]dns.RR, 0, published)
	extra := make([]dns.RR, 0, published)

	// Labels over all peers, critical ones too, so that they do not move
	// with health and match the Consul node names.
	labels := bridge.Labels(set.Peers)
	var fresh []*peerRecords // to pack once every name is in place
	seen := make(map[netip.Addr]bool, published)
	var namedSRV []dns.RR
	if set.Service.PortName != "" {
		namedSRV = make([]dns.RR, 0, published)
	}
	for i, p := range set.Peers {
		if !p.Published() {
			continue
		}
		host := labels[i] + "." + svcName
		if len(host)+1 > maxNameOctets {
			// No client could parse a record naming it (RFC 1035 2.3.4).
			t.tooLong = append(t.tooLong, host)
			continue
		}
		var pr *peerRecords
		if prev != nil {
			if n := prev.part.names[host]; n != nil {
				pr = n.peer
			}
		}
		if !pr.sameAs(set.Service, p) {
			pr = newPeerRecords(cfg, set.Service, host, svcName, p)
			fresh = append(fresh, pr)
		}
		names[host] = &pr.node
		t.part.records += pr.records()
		// An RRset never holds a record twice (RFC 2181 5.2): peers that
		// share an address (tasks on one host) give one record at the
		// service name, and each keeps its own name, SRV and PTR record.
		svc.a = appendNew(svc.a, pr.svcAddrs, dns.TypeA, seen)
		svc.aaaa = appendNew(svc.aaaa, pr.svcAddrs, dns.TypeAAAA, seen)
		svcSRV = append(svcSRV, pr.srv)
		if pr.named != nil {
			namedSRV = append(namedSRV, pr.named)
		}
		extra = append(extra, pr.a...)
		extra = append(extra, pr.aaaa...)
		for _, addr := range p.Addrs {
			if !reversible(addr) {
				continue
			}
			if _, ok := t.reverse[addr]; !ok {
				t.reverse[addr] = pr
				continue
			}
			if t.reverseMore == nil {
				t.reverseMore = map[netip.Addr][]*peerRecords{}
			}
			t.reverseMore[addr] = append(t.reverseMore[addr], pr)
		}
	}
	svc.set().srv, svc.more.extra = svcSRV, extra
	top := []string{svcName}
	if set.Service.PortName != "" {
		named := "_" + set.Service.PortName + "._tcp." + svcName
		n := names.node(cfg.zone, named)
		top = append(top, named, "_tcp."+svcName)
		n.shuffle = svc.shuffle
		n.set().extra = extra
		n.more.srv = namedSRV
	}

	// Pack through a snapshot of this part alone: answer reads no other.
	view := &Snapshot{zone: s.zone, serial: s.serial, negSOA: s.negSOA, parts: map[string]*part{set.Service.Name: &t.part}}
	for _, name := range top {
		n := names[name]
		n.clip()
		t.part.records += n.records()
		view.pack(name, n, in)
	}
	for _, pr := range fresh {
		view.pack(pr.host(), &pr.node, in)
	}
	return t
}

// newPeerRecords builds the records of peer p, whose owner name is host.
func newPeerRecords(cfg zoneConfig, svc bridge.Service, host, svcName string, p bridge.Peer) *peerRecords {
	// The SRV port is the peer's own (an ECS task's host port) unless the
	// topology's port is configured: PortFor decides for every publisher.
	pr := &peerRecords{}
	pr.peer = pr
	pr.svcAddrs = make([]dns.RR, 0, len(p.Addrs))
	for _, addr := range p.Addrs {
		ip := addr.AsSlice() // one copy for both records: never modified
		if addr.Is4() {
			pr.a = append(pr.a, addrRR(host, ip, cfg.ttl))
		} else {
			pr.aaaa = append(pr.aaaa, addrRR(host, ip, cfg.ttl))
		}
		pr.svcAddrs = append(pr.svcAddrs, addrRR(svcName, ip, cfg.ttl))
		if svc.NodeBasename != "" {
			pr.txt = append(pr.txt, txt(host, cfg.ttl, "node="+svc.NodeBasename+"@"+addr.String()))
		}
	}
	if p.ID != "" {
		pr.txt = append(pr.txt, txt(host, cfg.ttl, "id="+p.ID))
	}
	pr.srv = &dns.SRV{
		Hdr:      hdr(svcName, dns.TypeSRV, cfg.ttl),
		Priority: 0, Weight: 1, Port: svc.PortFor(p), Target: host,
	}
	if svc.PortName != "" {
		named := *pr.srv
		named.Hdr.Name = "_" + svc.PortName + "._tcp." + svcName
		pr.named = &named
	}
	pr.clip()
	return pr
}

// appendNew appends to dst the address records of rrs of type rrtype
// whose address is not in seen yet, and notes them there.
func appendNew(dst, rrs []dns.RR, rrtype uint16, seen map[netip.Addr]bool) []dns.RR {
	for _, rr := range rrs {
		var ip []byte
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if rr.Header().Rrtype != rrtype {
			continue
		}
		a, _ := netip.AddrFromSlice(ip)
		if a = a.Unmap(); !seen[a] {
			seen[a] = true
			dst = append(dst, rr)
		}
	}
	return dst
}

func (n *node) clip() {
	n.a, n.aaaa, n.txt = slices.Clip(n.a), slices.Clip(n.aaaa), slices.Clip(n.txt)
	if m := n.more; m != nil {
		for _, rrs := range []*[]dns.RR{&m.soa, &m.ns, &m.srv, &m.ptr, &m.extra} {
			*rrs = slices.Clip(*rrs)
		}
	}
}

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// addrRR is the A record of ip, 4 bytes long, or its AAAA record.
func addrRR(name string, ip []byte, ttl uint32) dns.RR {
	if len(ip) == net.IPv4len {
		return &dns.A{Hdr: hdr(name, dns.TypeA, ttl), A: ip}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl), AAAA: ip}
}

func txt(name string, ttl uint32, s string) dns.RR {
	return &dns.TXT{Hdr: hdr(name, dns.TypeTXT, ttl), Txt: []string{s}}
}

// WriteZone writes every record of the snapshot as zone text, sorted, the
// reverse names last.
func (s *Snapshot) WriteZone(w io.Writer) error {
	names := s.names()
	reverse := map[string]bool{}
	for _, t := range s.topos {
		for addr := range t.reverse {
			reverse[reverseName(addr)] = true
		}
	}
	for _, name := range slices.SortedFunc(maps.Keys(reverse), compareNames) {
		names = append(names, name)
	}
	for _, name := range names {
		n := s.lookup(name)
		if n == nil {
			n = &node{more: &nodeMore{ptr: s.ptrs(name)}}
		}
		m := n.get()
		for _, rrs := range [][]dns.RR{m.soa, m.ns, n.a, n.aaaa, m.srv, n.txt, m.ptr} {
			for _, rr := range rrs {
				if _, err := fmt.Fprintln(w, rr.String()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// names returns every name of the zone in zone-file order.
func (s *Snapshot) names() []string {
	var names []string
	for _, p := range s.parts {
		names = slices.AppendSeq(names, maps.Keys(p.names))
	}
	slices.SortFunc(names, compareNames)
	return names
}

// ptrs returns the PTR records of a reverse name, which must be lower
// case, of every topology: one per peer with the address, naming the
// peer, in topology and set order.
func (s *Snapshot) ptrs(name string) []dns.RR {
	addr, ok := parseReverse(name)
	if !ok {
		return nil
	}
	var out []dns.RR
	for _, t := range s.topos {
		pr := t.reverse[addr]
		if pr == nil {
			continue
		}
		for _, pr := range append([]*peerRecords{pr}, t.reverseMore[addr]...) {
			out = append(out, &dns.PTR{Hdr: hdr(name, dns.TypePTR, pr.srv.Hdr.Ttl), Ptr: pr.host()})
		}
	}
	return out
}

// reversible reports whether addr has a reverse name: not for an invalid
// address, nor for one with a zone, which dns.ReverseAddr does not take.
func reversible(addr netip.Addr) bool { return addr.IsValid() && addr.Zone() == "" }

// reverseName is the reverse name (in-addr.arpa or ip6.arpa) of addr,
// which must be reversible.
func reverseName(addr netip.Addr) string {
	name, _ := dns.ReverseAddr(addr.String())
	return name
}

// parseReverse is the address whose reverse name is name, exactly as
// reverseName writes it.
func parseReverse(name string) (netip.Addr, bool) {
	var addr netip.Addr
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		var b [4]byte
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return addr, false
		}
		for i, l := range labels {
			v, err := strconv.ParseUint(l, 10, 8)
			if err != nil {
				return addr, false
			}
			b[3-i] = byte(v)
		}
		addr = netip.AddrFrom4(b)
	} else if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		var b [16]byte
		if len(rest) != 63 {
			return addr, false
		}
		for i := range 32 {
			if i < 31 && rest[2*i+1] != '.' {
				return addr, false
			}
			v, err := strconv.ParseUint(rest[2*i:2*i+1], 16, 8)
			if err != nil {
				return addr, false
			}
			b[15-i/2] |= byte(v) << (4 * (i % 2))
		}
		addr = netip.AddrFrom16(b)
	} else {
		return addr, false
	}
	// Leading zeros, upper-case digits: only the name reverseName writes.
	return addr, reverseName(addr) == name
}

// compareNames orders names from the apex down, as in a zone file.
func compareNames(a, b string) int {
	return cmp.Or(cmp.Compare(dns.CountLabel(a), dns.CountLabel(b)), cmp.Compare(a, b))
}
