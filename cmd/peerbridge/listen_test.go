package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestFDRoles(t *testing.T) {
	for _, c := range []struct {
		n     int
		names string
		want  []string
		err   string
	}{
		{3, "", []string{"dns-udp", "dns-tcp", "http"}, ""},
		{2, "", []string{"dns-udp", "dns-tcp"}, ""},
		{3, "peerbridge.socket:peerbridge.socket:peerbridge.socket", []string{"dns-udp", "dns-tcp", "http"}, ""},
		{3, "http:dns-tcp:dns-udp", []string{"http", "dns-tcp", "dns-udp"}, ""},
		{4, "dns-udp:dns-udp:dns-tcp:http", []string{"dns-udp", "dns-udp", "dns-tcp", "http"}, ""},
		{1, "http", []string{"http"}, ""},
		{2, "http", nil, "has 1 names for 2"},
		{2, "http:stats", nil, "mixes"},
		{4, "", nil, "without the names"},
	} {
		got, err := fdRoles(c.n, c.names)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("fdRoles(%d, %q) = %v, %v; want an error with %q", c.n, c.names, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("fdRoles(%d, %q) = %v, %v; want %v", c.n, c.names, got, err, c.want)
		}
	}
}

// TestActivatedOtherProcess: variables meant for another process (a parent
// that passed them on) are neither used nor removed.
func TestActivatedOtherProcess(t *testing.T) {
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "3")
	a, err := activated()
	if a != nil || err != nil {
		t.Fatalf("activated() = %v, %v; want nothing", a, err)
	}
	if os.Getenv("LISTEN_FDS") != "3" {
		t.Error("LISTEN_FDS removed")
	}
}
