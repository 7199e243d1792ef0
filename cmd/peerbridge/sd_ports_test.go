package main

import (
	"reflect"
	"testing"

	"github.com/peerbridge/peerbridge/bridge"
)

// TestSDPeerPorts: a peer's own port (an ECS task's host port) is its
// target's port unless the topology's port is configured.
func TestSDPeerPorts(t *testing.T) {
	tasks := func(port uint16) map[string]bridge.Set {
		return map[string]bridge.Set{"tasks": bridge.Set{Service: bridge.Service{Topology: "tasks", Name: "tasks", Provider: "ecs", Port: port}, Peers: []bridge.Peer{
			{Name: "t1", ID: "t1", Addrs: addrs("10.0.0.1"), Port: 32768},
			{Name: "t2", ID: "t2", Addrs: addrs("10.0.0.1"), Port: 32769},
			{Name: "t3", ID: "t3", Addrs: addrs("fd00::3")},
		}}.Normalize()}
	}
	targets := func(groups []targetGroup) []string {
		var out []string
		for _, g := range groups {
			out = append(out, g.Targets...)
		}
		return out
	}
	if got, want := targets(sdTargetGroups(tasks(0), []string{"tasks"})), []string{"10.0.0.1:32768", "10.0.0.1:32769", "[fd00::3]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("own ports: %q, want %q", got, want)
	}
	if got, want := targets(sdTargetGroups(tasks(4369), []string{"tasks"})), []string{"10.0.0.1:4369", "10.0.0.1:4369", "[fd00::3]:4369"}; !reflect.DeepEqual(got, want) {
		t.Errorf("configured port: %q, want %q", got, want)
	}
}
