package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/peerbridge/peerbridge/dnsserver"
)

// TestRegistry holds every entry to the contract the reader and help rely
// on: a unique name that is a DNS label (it is a metrics label value and
// part of Consul meta), and variables of its own, each named after the
// provider so that no two providers (nor the common variables) share one.
func TestRegistry(t *testing.T) {
	seen := map[string]string{}
	common, err := envKeys("", &TopologyEnv{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range common {
		seen[k] = "the common variables"
	}
	for _, p := range providers {
		if !dnsserver.IsLabel(p.Name) || strings.ToLower(p.Name) != p.Name {
			t.Errorf("provider %q: the name is not a lower-case DNS label", p.Name)
		}
		if q, ok := lookupProvider(p.Name); !ok || q.env != p.env {
			t.Errorf("provider %q is registered twice", p.Name)
		}
		keys, err := envKeys("", reflect.New(p.env).Interface())
		if err != nil {
			t.Fatal(err)
		}
		prefix := strings.ToUpper(p.Name) + "_"
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) {
				t.Errorf("provider %s reads %s: its variables must start with %s", p.Name, k, prefix)
			}
			if other, dup := seen[k]; dup {
				t.Errorf("provider %s reads %s, as %s does", p.Name, k, other)
			}
			seen[k] = "provider " + p.Name
		}
	}
	all, err := envKeys("", newTopologyEnv().spec())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(seen) {
		t.Errorf("the topology spec reads %d variables, the parts %d", len(all), len(seen))
	}
}
