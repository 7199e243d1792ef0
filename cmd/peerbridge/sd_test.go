package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/dnsserver"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestSDTargetGroups(t *testing.T) {
	web := bridge.Set{Service: bridge.Service{Topology: "web", Name: "myapp", Provider: "droplet", Port: 4000}, Peers: []bridge.Peer{
		{Name: "web-1", ID: "101", Addrs: addrs("10.0.0.1", "fd00::1"), Health: bridge.HealthPassing,
			Attrs: map[string]string{"region": "nyc3", "vpc.uuid": "v1", "vpc_uuid": "v2", "9lives": "x"}},
		{Name: "web-2", ID: "102", Addrs: addrs("10.0.0.2"), Health: bridge.HealthCritical},
		{Name: "WEB_1", ID: "103", Addrs: addrs("fd00::3")}, // same DNS label as web-1: told apart as DNS does
	}}.Normalize()
	worker := bridge.Set{Service: bridge.Service{Topology: "worker", Name: "worker", Provider: "static"}, Peers: []bridge.Peer{
		{Name: "w", Addrs: addrs("fd00::9")},
	}}.Normalize()
	sets := map[string]bridge.Set{"web": web, "worker": worker}
	webLabels := bridge.Labels(web.Peers) // WEB_1, web-1, web-2 after Normalize

	tests := []struct {
		name       string
		topologies []string
		want       []targetGroup
	}{
		{"every topology, only published peers", []string{"web", "worker", "undiscovered"}, []targetGroup{
			{Targets: []string{"[fd00::3]:4000"}, Labels: map[string]string{
				sdTopology: "web", sdService: "myapp", sdPeer: webLabels[0], sdProviderID: "103", sdAddresses: "fd00::3"}},
			{Targets: []string{"10.0.0.1:4000"}, Labels: map[string]string{
				sdTopology: "web", sdService: "myapp", sdPeer: "web-1", sdProviderID: "101", sdAddresses: "10.0.0.1,fd00::1",
				sdAttrLabelPrefix + "region": "nyc3", sdAttrLabelPrefix + "vpc_uuid": "v1", sdAttrLabelPrefix + "9lives": "x"}},
			{Targets: []string{"[fd00::9]"}, Labels: map[string]string{ // no port: Prometheus adds the scheme's
				sdTopology: "worker", sdService: "worker", sdPeer: "w", sdProviderID: "w", sdAddresses: "fd00::9"}},
		}},
		{"one topology", []string{"worker"}, []targetGroup{
			{Targets: []string{"[fd00::9]"}, Labels: map[string]string{
				sdTopology: "worker", sdService: "worker", sdPeer: "w", sdProviderID: "w", sdAddresses: "fd00::9"}},
		}},
		{"nothing discovered yet", []string{"undiscovered"}, []targetGroup{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sdTargetGroups(sets, tt.topologies)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if webLabels[0] == "web-1" || webLabels[1] != "web-1" {
		t.Fatalf("labels %v: the test expects web-1 to keep its label", webLabels)
	}
}

func TestSanitizeLabelName(t *testing.T) {
	for in, want := range map[string]string{
		"region": "region", "vpc-uuid": "vpc_uuid", "io.rancher.stack": "io_rancher_stack", "Zone 1": "Zone_1", "é": "__", "": "",
	} {
		if got := sanitizeLabelName(in); got != want {
			t.Errorf("sanitizeLabelName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestServeSD(t *testing.T) {
	dns, err := dnsserver.New(dnsserver.Config{Zone: "peers.internal.", TTL: 5 * time.Second, NegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	set := bridge.Set{Service: bridge.Service{Topology: "web", Name: "web", Provider: "static", Port: 80},
		Peers: []bridge.Peer{{Name: "a", ID: "a", Addrs: addrs("10.0.0.1")}}}.Normalize()
	if err := dns.Publish(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	st := &state{dns: dns, topologies: []string{"web", "worker"}}
	h := serveSD(st)
	tests := []struct {
		query  string
		status int
		groups int
	}{
		{"", http.StatusOK, 1},
		{"?topology=web", http.StatusOK, 1},
		{"?topology=web&topology=web", http.StatusOK, 1},
		{"?topology=worker", http.StatusOK, 0}, // configured, not discovered yet
		{"?topology=nope", http.StatusNotFound, 0},
		{"?topology=web&topology=nope", http.StatusNotFound, 0},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w := httptest.NewRecorder()
			h(w, httptest.NewRequest("GET", "/sd/prometheus"+tt.query, nil))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status != http.StatusOK {
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q: Prometheus wants application/json", ct)
			}
			var groups []targetGroup
			if err := json.Unmarshal(w.Body.Bytes(), &groups); err != nil || groups == nil || len(groups) != tt.groups {
				t.Errorf("body %s (%v): want a list of %d groups", w.Body, err, tt.groups)
			}
		})
	}
}
