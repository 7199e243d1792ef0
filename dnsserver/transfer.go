package dnsserver

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Transfer configures peerbridge as a hidden primary: who may transfer the
// zone, whom to NOTIFY of a change, and the TSIG key both must use.
type Transfer struct {
	// Allow are the clients allowed to transfer the zone over TCP; empty
	// refuses every transfer.
	Allow []netip.Prefix
	// Notify are the host:port targets sent a NOTIFY at start and on each
	// serial change.
	Notify []string
	// Key, when set, must sign every transfer, and signs the NOTIFYs.
	Key *TSIGKey
	// MaxTransfers caps the transfers under way at once, and
	// MaxTransfersPerClient those of one client address; a transfer
	// beyond either is REFUSED, which secondaries retry later. 0 means
	// DefaultMaxTransfers and DefaultMaxTransfersPerClient.
	MaxTransfers, MaxTransfersPerClient int
}

// The transfer caps when Transfer leaves them 0. A transfer of a large
// zone costs CPU, packing its messages, and holds its snapshot until the
// client has read it all: the caps bound both, so that queries are
// answered as quickly during transfers as without, while a few
// secondaries, even each with a second transfer under way, are served.
const (
	DefaultMaxTransfers          = 8
	DefaultMaxTransfersPerClient = 2
)

// LogValue names the key, never its secret.
func (t Transfer) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Any("allow", t.Allow), slog.Any("notify", t.Notify)}
	if t.Key != nil {
		attrs = append(attrs, slog.Any("tsig_key", t.Key))
	}
	return slog.GroupValue(attrs...)
}

// TSIGKey is a TSIG key (RFC 8945). Its secret is never logged: String and
// LogValue show the name and algorithm only.
type TSIGKey struct {
	// Name is the key's name, lower case and fully qualified.
	Name string
	// Algorithm is miekg/dns's name of the HMAC, e.g. dns.HmacSHA256.
	Algorithm string
	// Secret is the base64 secret.
	Secret string
}

func (k TSIGKey) String() string { return k.Name + " (" + strings.TrimSuffix(k.Algorithm, ".") + ")" }

// GoString leaves the secret out of %#v too.
func (k TSIGKey) GoString() string { return "TSIGKey(" + k.String() + ")" }

// LogValue leaves the secret out.
func (k TSIGKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", k.Name), slog.String("algorithm", strings.TrimSuffix(k.Algorithm, ".")))
}

// tsigAlgorithms are the HMACs miekg/dns signs with, by the names BIND and
// Knot use in their configurations.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// ParseTSIGKey parses name:algorithm:base64-secret; empty is no key. Its
// errors never quote the secret.
func ParseTSIGKey(v string) (*TSIGKey, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	name, rest, ok1 := strings.Cut(v, ":")
	alg, secret, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return nil, errors.New("not name:algorithm:base64-secret")
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if _, ok := dns.IsDomainName(name); !ok || name == "" || name == "." || strings.Contains(name, "..") {
		return nil, fmt.Errorf("key name %q is not a domain name", name)
	}
	algorithm, ok := tsigAlgorithms[strings.ToLower(strings.TrimSuffix(alg, "."))]
	if !ok {
		return nil, fmt.Errorf("algorithm %q is not one of hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1", alg)
	}
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil || len(raw) == 0 {
		return nil, errors.New("the secret is not base64 (as tsig-keygen or keymgr print it)")
	}
	return &TSIGKey{Name: dns.Fqdn(name), Algorithm: algorithm, Secret: secret}, nil
}

// ParseTransferAllow parses a comma-separated list of IPs and CIDRs.
func ParseTransferAllow(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q is not an IP or CIDR", item))
				continue
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is not an IP or CIDR", item))
			continue
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errors.Join(errs...)
}

// ParseNotify parses a comma-separated list of host:port NOTIFY targets.
func ParseNotify(v string) ([]string, error) {
	var out []string
	var errs []error
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		host, port, err := net.SplitHostPort(item)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			errs = append(errs, fmt.Errorf("%q is not host:port (e.g. 10.0.0.7:53)", item))
			continue
		}
		out = append(out, item)
	}
	return out, errors.Join(errs...)
}

// NameServer is one apex NS, with the glue addresses that make it
// resolvable when it lies inside the zone.
type NameServer struct {
	Name  string // lower case, fully qualified
	Addrs []netip.Addr
}

// ParseNameServers parses a comma-separated list of names, each optionally
// name=addr; a name given twice collects both addresses (IPv4 and IPv6).
func ParseNameServers(v string) ([]NameServer, error) {
	var out []NameServer
	var errs []error
	index := map[string]int{}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, hasAddr := strings.Cut(item, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if _, ok := dns.IsDomainName(name); !ok || name == "" || name == "." || strings.Contains(name, "..") {
			errs = append(errs, fmt.Errorf("%q is not a domain name", name))
			continue
		}
		name = dns.Fqdn(name)
		i, seen := index[name]
		if !seen {
			i = len(out)
			index[name] = i
			out = append(out, NameServer{Name: name})
		}
		if hasAddr {
			a, err := netip.ParseAddr(strings.TrimSpace(addr))
			if err != nil || a.Zone() != "" {
				errs = append(errs, fmt.Errorf("%q: %q is not an IP address", item, addr))
				continue
			}
			out[i].Addrs = append(out[i].Addrs, a.Unmap())
		}
	}
	return out, errors.Join(errs...)
}

// CheckNameServers reports what New would find wrong with ns for zone,
// which must be canonical (CanonicalZone).
func CheckNameServers(zone string, ns []NameServer) error {
	_, err := nameServers(zone, ns)
	return err
}

// nameServers checks ns against zone and fills in the default, ns.<zone>.
// Glue belongs to names inside the zone: the address of any other name is
// its own zone's business.
func nameServers(zone string, ns []NameServer) ([]NameServer, error) {
	if len(ns) == 0 {
		return []NameServer{{Name: "ns." + zone}}, nil
	}
	out := make([]NameServer, len(ns))
	for i, n := range ns {
		n.Name = dns.Fqdn(strings.ToLower(n.Name))
		if len(n.Addrs) > 0 && !dns.IsSubDomain(zone, n.Name) {
			return nil, fmt.Errorf("name server %s has addresses but is outside %s: glue belongs to names inside the zone", n.Name, zone)
		}
		if n.Name == zone {
			return nil, fmt.Errorf("name server %s is the zone apex: use a name below it, e.g. ns.%s", n.Name, zone)
		}
		out[i] = n
	}
	return out, nil
}
