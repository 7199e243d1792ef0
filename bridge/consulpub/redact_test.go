package consulpub

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
)

func TestRedactAddr(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "",
		"127.0.0.1:8500":                "127.0.0.1:8500",
		"consul.service:8500":           "consul.service:8500",
		"admin:s3cret@host:8500":        "admin:xxxxx@host:8500",
		"http://admin:s3cret@host:8500": "http://admin:xxxxx@host:8500",
		"https://consul.example.com":    "https://consul.example.com",
		"unix:///var/run/consul.sock":   "unix:///var/run/consul.sock",
		"admin:s3cret@[::1]:8500":       "admin:xxxxx@[::1]:8500",
		"admin:s3cret@host:8500/%zz":    "admin:xxxxx@host:8500/%zz",
	} {
		if got := RedactAddr(in); got != want {
			t.Errorf("RedactAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSyncErrorsHideThePassword syncs against an address with user info
// that nothing answers: consul/api's error names the URL, and with it
// the password, which must not reach the error the loop logs.
func TestSyncErrorsHideThePassword(t *testing.T) {
	for _, addr := range []string{"http://admin:s3cret@127.0.0.1:1", "admin:s3cret@127.0.0.1:1"} {
		t.Run(addr, func(t *testing.T) {
			cfg := api.DefaultConfig()
			cfg.Address = addr
			client, err := api.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(Options{Client: client, Owner: "peerbridge"})
			if err != nil {
				t.Fatal(err)
			}
			set := bridge.Set{Service: bridge.Service{Topology: "web", Name: "web"}}
			p.Publish(context.Background(), set)
			err = p.Sync(context.Background())
			if err == nil {
				t.Fatal("no error from an address nothing listens on")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the password leaked: %v", err)
			}
			if got := p.Publish(context.Background(), set); got == nil || strings.Contains(got.Error(), "s3cret") {
				t.Errorf("the loop's error = %v", got)
			}
			var inner interface{ Unwrap() error }
			if !errors.As(err, &inner) {
				t.Errorf("the chain is lost: %T", err)
			}
		})
	}
}
