package static

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    map[string][]string // name -> addresses
		wantErr []string            // substrings, one per expected problem
	}{
		{name: "two peers", spec: "node1=10.0.0.1,node2=10.0.0.2",
			want: map[string][]string{"node1": {"10.0.0.1"}, "node2": {"10.0.0.2"}}},
		{name: "a name twice is v4 and v6", spec: "node1=10.0.0.1, node1=[fd00::1] ,node2=fd00::2",
			want: map[string][]string{"node1": {"10.0.0.1", "fd00::1"}, "node2": {"fd00::2"}}},
		{name: "mapped v4 is unmapped", spec: "a=::ffff:192.0.2.1",
			want: map[string][]string{"a": {"192.0.2.1"}}},
		{name: "empty", spec: " ", wantErr: []string{"no peers given"}},
		{name: "every bad entry is named", spec: "good=10.0.0.1,noequals,=10.0.0.2,x=,y=10.0.0.300,z=fe80::1%eth0,good=10.0.0.1",
			wantErr: []string{
				`entry 2 "noequals": want name=address`,
				`entry 3 "=10.0.0.2": empty name`,
				`entry 4 "x=": empty address`,
				`entry 5 "y=10.0.0.300": "10.0.0.300" is not an IP address`,
				`entry 6 "z=fe80::1%eth0": "fe80::1%eth0" has a zone`,
				`entry 7 "good=10.0.0.1": address listed twice for good`,
			}},
		{name: "trailing comma", spec: "a=10.0.0.1,", wantErr: []string{`entry 2 "": want name=address`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			peers, err := Parse(tc.spec)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Parse(%q) succeeded, want errors", tc.spec)
				}
				lines := strings.Split(err.Error(), "\n")
				if len(lines) != len(tc.wantErr) {
					t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tc.wantErr), err)
				}
				for i, want := range tc.wantErr {
					if !strings.Contains(lines[i], want) {
						t.Errorf("problem %d = %q, want it to say %q", i+1, lines[i], want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.spec, err)
			}
			got := map[string][]string{}
			for _, p := range peers {
				if p.ID != p.Name {
					t.Errorf("peer %s has id %q, want its name", p.Name, p.ID)
				}
				for _, a := range p.Addrs {
					got[p.Name] = append(got[p.Name], a.String())
				}
			}
			for name, addrs := range tc.want {
				if !slices.Equal(got[name], addrs) {
					t.Errorf("%s: addresses %v, want %v", name, got[name], addrs)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got peers %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPeersReturnsCopies(t *testing.T) {
	opts, err := Configure(Env{StaticPeers: "a=10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := p.Peers(context.Background())
	first[0].Addrs[0] = netip.MustParseAddr("192.0.2.1")
	second, _ := p.Peers(context.Background())
	if second[0].Addrs[0].String() != "10.0.0.1" {
		t.Fatal("a caller's change to the peers leaked into the provider")
	}
}
