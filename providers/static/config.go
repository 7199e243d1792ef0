package static

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/peerbridge/peerbridge/bridge"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:       "static",
	Summary:    "peers listed in the configuration, name=addr,...",
	Configured: true,
}

// Env is the provider's environment spec (see the command's registry).
type Env struct {
	StaticPeers string `split_words:"true" desc:"static peers: name=addr,name=addr; a name given twice has two addresses"`
}

// Options configure a provider.
type Options struct {
	// Peers are returned on every poll; Parse makes them.
	Peers []bridge.Peer
	// Logger is unused: a static provider has nothing to say.
	Logger *slog.Logger
}

// Configure parses the peers, one bridge.SettingError per bad entry.
func Configure(env Env) (Options, error) {
	peers, err := Parse(env.StaticPeers)
	if err != nil {
		var errs []error
		for line := range strings.SplitSeq(err.Error(), "\n") {
			errs = append(errs, bridge.Invalid("STATIC_PEERS", "%s", line))
		}
		return Options{}, errors.Join(errs...)
	}
	return Options{Peers: peers}, nil
}

// Validate checks the options: at least one peer.
func (o Options) Validate() error {
	if len(o.Peers) == 0 {
		return bridge.Invalid("STATIC_PEERS", "no peers given: set name=address pairs, e.g. node1=10.0.0.1,node2=10.0.0.2")
	}
	return nil
}

// LogAttrs are the settings for the start-up log line: none, the peers
// are logged with every poll.
func (o Options) LogAttrs() []any { return nil }
