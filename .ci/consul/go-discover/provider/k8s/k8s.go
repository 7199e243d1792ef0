// Package k8s stands in for go-discover's Kubernetes provider, which Consul
// registers by name; see the discover package for why it finds nothing.
package k8s

import (
	"errors"
	"log"
)

// Provider is the "k8s" cloud auto-join provider, not built in.
type Provider struct{}

// Help says that Kubernetes auto-join is not built in.
func (p *Provider) Help() string {
	return "k8s: not built into this Consul (peerbridge's test build has no cloud auto-join)\n"
}

// Addrs always fails: there is no Kubernetes look-up in this build.
func (p *Provider) Addrs(args map[string]string, l *log.Logger) ([]string, error) {
	return nil, errors.New("discover-k8s: not built into this Consul (peerbridge's test build has no cloud auto-join)")
}
