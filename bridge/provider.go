package bridge

import "errors"

// ProviderInfo describes one provider for the command's registry: what
// the command, its help, its metrics and the docs need to know of a
// provider besides its own variables (which its package's Env spec
// declares) and its options (which its package validates).
type ProviderInfo struct {
	// Name is the PEERBRIDGE_PROVIDER value (droplet, hcloud, ...).
	Name string
	// Summary is one line for help and docs: what it discovers.
	Summary string
	// Metered providers implement Metered: their API reports its rate
	// limit in every answer, so PEERBRIDGE_POLL_INTERVAL=auto can pace
	// them.
	Metered bool
	// VendorVars are the variables outside PEERBRIDGE_ that the provider
	// reads, as the platform's own tools name them (HCLOUD_TOKEN,
	// DIGITALOCEAN_TOKEN_FILE, AWS_REGION, ...), for help and docs.
	VendorVars []string
	// Attrs are the attribute keys its peers carry (Peer.Attrs), for
	// docs; a key ending in '*' stands for a family (label_*).
	Attrs []string
	// ContainerPort providers read PEERBRIDGE_PORT as the port inside the
	// peers' containers, and publish each peer at the port the platform
	// maps it to (Peer.Port: an ECS bridge task's host port), rather than
	// at PEERBRIDGE_PORT itself. Their Options have a ContainerPort
	// uint16 field, which the command sets; their topology's
	// Service.Port stays 0, so that Service.PortFor takes the peer's.
	ContainerPort bool
	// Configured providers know their peers from their configuration
	// alone (static): Peers asks nothing of anyone, so the command can
	// check them at start, for Consul node names two topologies share.
	Configured bool
}

// VariableError is a problem with a variable outside the PEERBRIDGE_
// scheme (HCLOUD_TOKEN_FILE, NOMAD_CACERT), named as it is: the command
// reports it under that name, where a SettingError's name is mapped to
// the PEERBRIDGE_ variable that was set.
type VariableError struct {
	Variable string
	Err      error
}

func (e *VariableError) Error() string { return e.Variable + ": " + e.Err.Error() }

// Unwrap returns the problem.
func (e *VariableError) Unwrap() error { return e.Err }

// ErrInconsistentListing marks a listing whose pages disagree: the same
// id on two pages, or a total that changed between pages (offset pages
// shift when an instance is deleted mid-listing). The loop lists again
// once at once; a second such listing is no news, like any failed poll.
var ErrInconsistentListing = errors.New("the listing's pages disagree")
