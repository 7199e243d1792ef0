package bridge

import (
	"slices"
	"strings"
	"testing"
)

func TestLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"node1", "node1"},
		{"Web-01", "web-01"},
		{"web_01.example.com", "web-01-example-com"},
		{"--a--b--", "a-b"},
		{"a--b", "a-b"},
		{"a-b-c9", "a-b-c9"},
		{"-a", "a"},
		{"ünïcode", "n-code"},
		{"", "peer"},
		{"___", "peer"},
		{strings.Repeat("a", 70), strings.Repeat("a", 63)},
		{strings.Repeat("a", 62) + "-b", strings.Repeat("a", 62)},
	} {
		if got := label(tc.in); got != tc.want {
			t.Errorf("label(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLabels(t *testing.T) {
	p := func(name, id string) Peer { return Peer{Name: name, ID: id} }
	t.Run("unique names keep their labels", func(t *testing.T) {
		got := Labels([]Peer{p("a", "1"), p("B", "2")})
		if !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("the exact name keeps the label, others get a stable suffix", func(t *testing.T) {
		peers := []Peer{p("Web", "1"), p("web", "2"), p("web", "3"), p("web_", "4")}
		got := Labels(peers)
		if got[1] != "web" {
			t.Fatalf("exact name lost its label: %q", got)
		}
		seen := map[string]bool{}
		for _, l := range got {
			if seen[l] || len(l) > maxLabel || !strings.HasPrefix(l, "web") {
				t.Fatalf("labels not unique, too long or unrelated: %q", got)
			}
			seen[l] = true
		}
		// Another order, and a peer more: the same peers keep their labels.
		again := Labels([]Peer{p("web_", "4"), p("web", "3"), p("web", "2"), p("Web", "1"), p("web", "5")})
		if again[0] != got[3] || again[1] != got[2] || again[2] != got[1] || again[3] != got[0] {
			t.Fatalf("labels depend on order: %q then %q", got, again)
		}
	})
	t.Run("long names with a suffix stay within 63", func(t *testing.T) {
		long := strings.Repeat("x", 80)
		got := Labels([]Peer{p(long, "1"), p(long, "2")})
		if got[0] == got[1] || len(got[0]) > maxLabel || len(got[1]) > maxLabel {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("same name and id still differ", func(t *testing.T) {
		got := Labels([]Peer{p("a", "1"), p("a", "1"), p("a", "1")})
		if got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
			t.Fatalf("got %q", got)
		}
	})
}
