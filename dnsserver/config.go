package dnsserver

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
)

// maxTTL is the largest TTL RFC 2181 8 allows.
const maxTTL = 1<<31 - 1

// minPeerLabel is the room a service must leave for the shortest peer
// label: every peer's owner name is <label>.<service>.<zone>.
const minPeerLabel = 1

// Validate checks the zone, the TTLs and the TCP connection cap, naming each setting that is
// wrong (bridge.SettingError), all at once.
func (c Config) Validate() error {
	var errs []error
	if _, err := CanonicalZone(c.Zone); err != nil {
		errs = append(errs, &bridge.SettingError{Setting: "DNS_DOMAIN", Err: err})
	}
	for _, t := range []struct {
		setting string
		d       time.Duration
	}{{"DNS_TTL", c.TTL}, {"DNS_NEGATIVE_TTL", c.NegativeTTL}} {
		if t.d < 0 || t.d%time.Second != 0 || t.d > maxTTL*time.Second {
			errs = append(errs, bridge.Invalid(t.setting, "%s must be whole seconds from 0 to %d (RFC 2181), e.g. 30 or 30s", t.d, maxTTL))
		}
	}
	if err := CheckMaxTCPConns(c.MaxTCPConns); err != nil {
		errs = append(errs, &bridge.SettingError{Setting: "DNS_MAX_TCP_CONNS", Err: err})
	}
	errs = append(errs, c.RateLimit.Validate())
	return errors.Join(errs...)
}

// hostLabel is a host name label (RFC 952, RFC 1123): letters, digits and
// inner hyphens. serviceLabel is an underscore label as SRV owner names
// use them (RFC 2782, RFC 8552).
var (
	hostLabel    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	serviceLabel = regexp.MustCompile(`^_[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	portName     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`) // RFC 6335 service names
)

// IsLabel reports whether s is a host name label: letters, digits and
// inner hyphens, at most 63, in lower case.
func IsLabel(s string) bool { return hostLabel.MatchString(s) }

// CanonicalZone returns zone in the form the server uses: lower case and
// fully qualified. It fails on anything that is not a host name (letters,
// digits, inner hyphens, and underscore labels where DNS uses them),
// which the fast path and the full path would otherwise answer apart.
func CanonicalZone(zone string) (string, error) {
	zone = strings.ToLower(strings.TrimSpace(zone))
	if zone == "" || zone == "." {
		return "", errors.New("the zone must be a domain name below the root, e.g. peers.internal")
	}
	fqdn := dns.Fqdn(zone)
	for _, label := range strings.Split(strings.TrimSuffix(fqdn, "."), ".") {
		if !hostLabel.MatchString(label) && !serviceLabel.MatchString(label) {
			return "", fmt.Errorf("%q is not a domain name of letters, digits and inner hyphens (label %q), e.g. peers.internal", zone, label)
		}
	}
	// Room for <service>.<zone> with the shortest labels.
	if len(fqdn)+2*(minPeerLabel+1)+1 > 255 {
		return "", fmt.Errorf("%q is too long: it leaves no room for service and peer names within 255 octets", zone)
	}
	return fqdn, nil
}

// CheckService checks a service name and port name against the zone:
// labels as host names and SRV records need them, and owner names that
// leave room for peer labels within 255 octets. It names the settings
// (SERVICE, PORT_NAME) in bridge.SettingError values.
func (c Config) CheckService(service, port string) error {
	var errs []error
	switch {
	case !hostLabel.MatchString(service):
		errs = append(errs, bridge.Invalid("SERVICE", "%q is not a DNS label (letters, digits, inner hyphens, at most 63)", service))
	case service == "ns":
		errs = append(errs, bridge.Invalid("SERVICE", `"ns" is reserved for the zone's name server`))
	}
	if port != "" && !portName.MatchString(port) {
		errs = append(errs, bridge.Invalid("PORT_NAME", "%q is not a service name (RFC 6335: letters, digits, inner hyphens, at most 15)", port))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	zone, err := CanonicalZone(c.Zone)
	if err != nil {
		return nil // reported by Validate
	}
	svc := service + "." + zone
	if room := 255 - len(svc) - 1; room < minPeerLabel+1 {
		errs = append(errs, bridge.Invalid("SERVICE", "%q in zone %s leaves no room for peer names within 255 octets", service, zone))
	}
	if port != "" && len("_"+port+"._tcp."+svc)+1 > 255 {
		errs = append(errs, bridge.Invalid("PORT_NAME", "_%s._tcp.%s is longer than 255 octets", port, svc))
	}
	return errors.Join(errs...)
}
