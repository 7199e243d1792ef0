package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// Issue 25, finding 3: peers of two topologies that map to one Consul
// node name are found at start when they are static, with an error
// naming both topologies and both peers; service names that make such a
// collision possible get a warning.
func TestNodeNameCollisionAtStart(t *testing.T) {
	base := map[string]string{
		"PEERBRIDGE_TOPOLOGIES":    "web,web-api",
		"PEERBRIDGE_PROVIDER":      "static",
		"PEERBRIDGE_DNS_ADDR":      "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":     "127.0.0.1:0",
		"PEERBRIDGE_OWNER":         "pb",
		"CONSUL_HTTP_ADDR":         "127.0.0.1:1", // never reached: nothing listens there
		"PEERBRIDGE_WEB_API_PORT":  "80",
		"PEERBRIDGE_WEB_PORT":      "80",
		"PEERBRIDGE_POLL_INTERVAL": "1h",
	}
	t.Run("static peers collide", func(t *testing.T) {
		env := map[string]string{
			"PEERBRIDGE_WEB_STATIC_PEERS":     "api-1=10.0.0.1,x=10.0.0.2",
			"PEERBRIDGE_WEB_API_STATIC_PEERS": "1=10.0.1.1",
		}
		for k, v := range base {
			env[k] = v
		}
		setEnv(t, env)
		var logs bridgetest.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- NewMain(io.Discard, &logs).Run(ctx, nil) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
			t.Fatal("still running 10s after start, despite the collision")
		}
		want := `topologies web and web-api: their peers "api-1" and "1" would both be Consul node pb-web-api-1`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run = %v, want %s", err, want)
		}
	})
	t.Run("service names that may collide", func(t *testing.T) {
		env := map[string]string{
			"PEERBRIDGE_WEB_STATIC_PEERS":     "x=10.0.0.2",
			"PEERBRIDGE_WEB_API_STATIC_PEERS": "1=10.0.1.1",
		}
		for k, v := range base {
			env[k] = v
		}
		setEnv(t, env)
		run := startMain(t)
		if err := run.stop(); err != nil {
			t.Fatal(err)
		}
		if want := "topology=web-api other=web"; !strings.Contains(run.logs.String(), want) {
			t.Errorf("no warning with %s:\n%s", want, run.logs.String())
		}
	})
}
