package dnsserver

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"log/slog"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	for _, tc := range []struct {
		cfg  Config
		want []string // settings, in order
	}{
		{Config{Zone: "peers.internal", TTL: 5 * time.Second}, nil},
		{Config{Zone: "_svc.Peers.Internal."}, nil},
		{Config{Zone: "peers internal"}, []string{"DNS_DOMAIN"}},
		{Config{Zone: `pe"ers.internal`}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "peers;internal"}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "peers/internal"}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "a..b"}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "-a.b"}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "a_b.internal"}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "."}, []string{"DNS_DOMAIN"}},
		{Config{Zone: long}, []string{"DNS_DOMAIN"}},
		{Config{Zone: "x", TTL: -5 * time.Second, NegativeTTL: 1500 * time.Millisecond}, []string{"DNS_TTL", "DNS_NEGATIVE_TTL"}},
		{Config{Zone: "x", TTL: 1 << 31 * time.Second}, []string{"DNS_TTL"}},
	} {
		t.Run(tc.cfg.Zone, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got []string
			for _, se := range bridge.SettingErrors(err) {
				got = append(got, se.Setting)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Validate() = %v, want problems with %v", err, tc.want)
			}
			if _, nerr := New(tc.cfg); (nerr != nil) != (len(tc.want) > 0) {
				t.Errorf("New() = %v, Validate() = %v", nerr, err)
			}
		})
	}
}

func TestCheckService(t *testing.T) {
	zone188 := strings.Repeat("z", 63) + "." + strings.Repeat("y", 63) + "." + strings.Repeat("x", 50) + ".example."
	zone250 := strings.Repeat("z", 63) + "." + strings.Repeat("y", 63) + "." + strings.Repeat("x", 63) + "." + strings.Repeat("w", 57) // 250 octets as text, with the root
	for _, tc := range []struct {
		zone, service, port string
		want                string
	}{
		{"peers.internal", "web", "epmd", ""},
		{"peers.internal", "my_app", "", "SERVICE"},
		{"peers.internal", "ns", "", "SERVICE"},
		{"peers.internal", "web", "a_very_long_port_name", "PORT_NAME"},
		{zone188, "web", "epmd", ""},
		{zone188, strings.Repeat("s", 63), "", ""}, // room for peer labels of 2
		{zone250, "w", "", ""},
		{zone250, "ww", "", "SERVICE"},
		{zone250, "w", "p", "PORT_NAME"},
	} {
		t.Run(tc.service+"."+tc.zone[:min(len(tc.zone), 20)], func(t *testing.T) {
			if err := (Config{Zone: tc.zone}).Validate(); err != nil {
				t.Fatalf("zone: %v", err)
			}
			err := Config{Zone: tc.zone}.CheckService(tc.service, tc.port)
			ses := bridge.SettingErrors(err)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckService = %v", err)
			case tc.want != "" && (len(ses) != 1 || ses[0].Setting != tc.want):
				t.Errorf("CheckService = %v, want a problem with %s", err, tc.want)
			}
		})
	}
}

// TestNamesTooLong publishes a peer whose owner name would exceed 255
// octets: it is left out, logged once and counted, and the answers for
// the whole service stay parseable.
func TestNamesTooLong(t *testing.T) {
	zone := strings.Repeat("z", 63) + "." + strings.Repeat("y", 63) + "." + strings.Repeat("x", 50) + ".example."
	logs := &bridgetest.Buffer{}
	srv := startServer(t, Config{Zone: zone, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	longName := strings.Repeat("p", 63)
	set := bridge.Set{Service: bridge.Service{Topology: "web", Name: "web", Port: 4369}, Peers: []bridge.Peer{
		{Name: "a", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		{Name: longName, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
	}}
	srv.publish(t, set)
	set.Peers[0].ID = "changed" // a second build with the same long name
	srv.publish(t, set)
	for _, network := range []string{"udp", "tcp"} {
		r := srv.query(t, network, "web."+zone, dns.TypeSRV, 4096)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Target != "a.web."+zone {
			t.Errorf("%s: SRV answer %v", network, r.Answer)
		}
	}
	if r := srv.query(t, "udp", "2.0.0.10.in-addr.arpa.", dns.TypePTR, 0); len(r.Answer) != 0 {
		t.Errorf("PTR of the skipped peer: %v", r.Answer)
	}
	if n := strings.Count(logs.String(), "longer than 255 octets"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs)
	}
	if n := srv.Stats().NamesTooLong; n != 2 {
		t.Errorf("NamesTooLong = %d, want 2 (one per build)", n)
	}
}
