package dnsserver

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"

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
}

// Snapshot holds every record the server answers with. It is built off the
// query path, never modified after, and swapped in whole, so a query sees
// one consistent set of records without taking a lock.
type Snapshot struct {
	zone   string
	serial uint32
	// negSOA is the SOA for the authority section of negative answers,
	// with the TTL RFC 2308 asks for: min(SOA TTL, SOA minimum).
	negSOA []dns.RR
	// names holds every name that exists in the zone, empty non-terminals
	// included, keyed by lower-case FQDN.
	names map[string]*node
	// reverse holds the in-addr.arpa and ip6.arpa names of peer addresses.
	reverse map[string]*node
	// fast holds the packed answers of the fast path, by fastKey.
	fast map[string]*packed
	// tooLong lists the peer owner names left out for being longer than
	// a name may be.
	tooLong []string
}

// node is one owner name's records. Every slice is clipped, so that an
// append on the query path copies instead of writing into the snapshot.
type node struct {
	soa, ns, a, aaaa, srv, txt, ptr []dns.RR
	// extra is the A/AAAA of the SRV targets for the additional section.
	extra []dns.RR
	// shuffle marks service names, whose answers are served in random order
	// so that clients spread over peers.
	shuffle bool
}

func (n *node) rrset(qtype uint16) []dns.RR {
	switch qtype {
	case dns.TypeA:
		return n.a
	case dns.TypeAAAA:
		return n.aaaa
	case dns.TypeSRV:
		return n.srv
	case dns.TypeTXT:
		return n.txt
	case dns.TypePTR:
		return n.ptr
	case dns.TypeSOA:
		return n.soa
	case dns.TypeNS:
		return n.ns
	case dns.TypeANY:
		// RFC 8482: one RRset is a complete answer to ANY.
		for _, rrs := range [][]dns.RR{n.soa, n.a, n.aaaa, n.srv, n.txt, n.ptr} {
			if len(rrs) > 0 {
				return rrs
			}
		}
	}
	return nil
}

// Serial is the SOA serial of the snapshot.
func (s *Snapshot) Serial() uint32 { return s.serial }

// build makes the snapshot for sets, which must be normalized.
func build(cfg zoneConfig, serial uint32, sets []bridge.Set) *Snapshot {
	s := &Snapshot{
		zone:    cfg.zone,
		serial:  serial,
		names:   map[string]*node{},
		reverse: map[string]*node{},
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
	apex := s.node(cfg.zone)
	apex.soa = []dns.RR{soa(cfg.ttl)}
	s.negSOA = []dns.RR{soa(min(cfg.ttl, cfg.negTTL))}
	s.addNameServers(cfg, apex)

	slices.SortFunc(sets, func(a, b bridge.Set) int { return cmp.Compare(a.Service.Name, b.Service.Name) })
	for _, set := range sets {
		s.addService(cfg, set)
	}
	for _, n := range s.names {
		n.clip()
	}
	for _, n := range s.reverse {
		n.clip()
	}
	s.pack()
	return s
}

func (s *Snapshot) addService(cfg zoneConfig, set bridge.Set) {
	svcName := set.Service.Name + "." + cfg.zone
	svc := s.node(svcName)
	svc.shuffle = !cfg.fixedOrder

	// Labels over all peers, critical ones too, so that they do not move
	// with health and match the Consul node names.
	labels := bridge.Labels(set.Peers)
	for i, p := range set.Peers {
		if !p.Published() {
			continue
		}
		host := labels[i] + "." + svcName
		if len(host)+1 > maxNameOctets {
			// No client could parse a record naming it (RFC 1035 2.3.4).
			s.tooLong = append(s.tooLong, host)
			continue
		}
		pn := s.node(host)
		for _, addr := range p.Addrs {
			if addr.Is4() {
				pn.a = append(pn.a, addrRR(host, addr, cfg.ttl))
				svc.a = append(svc.a, addrRR(svcName, addr, cfg.ttl))
			} else {
				pn.aaaa = append(pn.aaaa, addrRR(host, addr, cfg.ttl))
				svc.aaaa = append(svc.aaaa, addrRR(svcName, addr, cfg.ttl))
			}
			s.addPTR(addr, host, cfg.ttl)
			if set.Service.NodeBasename != "" {
				pn.txt = append(pn.txt, txt(host, cfg.ttl, "node="+set.Service.NodeBasename+"@"+addr.String()))
			}
		}
		if p.ID != "" {
			pn.txt = append(pn.txt, txt(host, cfg.ttl, "id="+p.ID))
		}
		svc.srv = append(svc.srv, &dns.SRV{
			Hdr:      hdr(svcName, dns.TypeSRV, cfg.ttl),
			Priority: 0, Weight: 1, Port: set.Service.Port, Target: host,
		})
		svc.extra = append(svc.extra, pn.a...)
		svc.extra = append(svc.extra, pn.aaaa...)
	}

	if set.Service.PortName != "" {
		named := "_" + set.Service.PortName + "._tcp." + svcName
		n := s.node(named)
		n.shuffle = svc.shuffle
		n.extra = svc.extra
		for _, rr := range svc.srv {
			srv := *rr.(*dns.SRV)
			srv.Hdr.Name = named
			n.srv = append(n.srv, &srv)
		}
	}
}

// node returns the node for name, creating it and the empty non-terminals
// between it and the apex, which must answer NODATA rather than NXDOMAIN
// (RFC 8020).
func (s *Snapshot) node(name string) *node {
	if n, ok := s.names[name]; ok {
		return n
	}
	n := &node{}
	s.names[name] = n
	if name != s.zone {
		if _, parent, ok := strings.Cut(name, "."); ok && dns.IsSubDomain(s.zone, parent) {
			s.node(parent)
		}
	}
	return n
}

func (s *Snapshot) addPTR(addr netip.Addr, host string, ttl uint32) {
	rev, err := dns.ReverseAddr(addr.String())
	if err != nil {
		return // unreachable for a valid netip.Addr
	}
	n := s.reverse[rev]
	if n == nil {
		n = &node{}
		s.reverse[rev] = n
	}
	n.ptr = append(n.ptr, &dns.PTR{Hdr: hdr(rev, dns.TypePTR, ttl), Ptr: host})
}

func (n *node) clip() {
	for _, rrs := range []*[]dns.RR{&n.soa, &n.ns, &n.a, &n.aaaa, &n.srv, &n.txt, &n.ptr, &n.extra} {
		*rrs = slices.Clip(*rrs)
	}
}

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

func addrRR(name string, addr netip.Addr, ttl uint32) dns.RR {
	if addr.Is4() {
		return &dns.A{Hdr: hdr(name, dns.TypeA, ttl), A: addr.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl), AAAA: addr.AsSlice()}
}

func txt(name string, ttl uint32, s string) dns.RR {
	return &dns.TXT{Hdr: hdr(name, dns.TypeTXT, ttl), Txt: []string{s}}
}

// WriteZone writes every record of the snapshot as zone text, sorted, the
// reverse names last.
func (s *Snapshot) WriteZone(w io.Writer) error {
	for _, m := range []map[string]*node{s.names, s.reverse} {
		for _, name := range slices.SortedFunc(maps.Keys(m), compareNames) {
			n := m[name]
			for _, rrs := range [][]dns.RR{n.soa, n.ns, n.a, n.aaaa, n.srv, n.txt, n.ptr} {
				for _, rr := range rrs {
					if _, err := fmt.Fprintln(w, rr.String()); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// compareNames orders names from the apex down, as in a zone file.
func compareNames(a, b string) int {
	return cmp.Or(cmp.Compare(dns.CountLabel(a), dns.CountLabel(b)), cmp.Compare(a, b))
}
