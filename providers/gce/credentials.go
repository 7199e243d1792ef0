package gce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/compute/v1"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// scope is the least the listing needs: read-only Compute. The metadata
// server issues a token of the VM's own scopes; key files get this one.
const scope = compute.ComputeReadonlyScope

// FindCredentials runs Application Default Credentials as Google's
// libraries do (GOOGLE_APPLICATION_CREDENTIALS, then gcloud's ADC file,
// then the metadata server) and says which source it found, for the
// start-up log. Only local files are read, except on the metadata server,
// whose project is asked for once. Tokens are fetched when first needed.
func FindCredentials() (*google.Credentials, string, error) {
	// Token requests (a key's token_uri) use this client: bounded, and
	// bound to no context that could end before the provider does.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: startTimeout})
	source := describeSource()
	creds, err := google.FindDefaultCredentials(ctx, scope)
	if err != nil {
		if os.Getenv("GOOGLE_APPLICATION_CREDENTIALS") != "" {
			return nil, "", &bridge.VariableError{Variable: "GOOGLE_APPLICATION_CREDENTIALS", Err: err}
		}
		return nil, "", &bridge.VariableError{Variable: "GOOGLE_APPLICATION_CREDENTIALS", Err: fmt.Errorf(
			"no Google credentials: set it to a service-account key file, run gcloud auth application-default login, "+
				"or run on GCE or GKE with a service account (the metadata server; GCE_METADATA_HOST names another): %w", err)}
	}
	if kind := keyKind(creds.JSON); kind != "" {
		source += " (" + kind + ")"
	}
	return creds, source, nil
}

// describeSource names the source FindDefaultCredentials picks, in its
// order: a path or a host, never the key.
func describeSource() string {
	if f := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS"); f != "" {
		return "GOOGLE_APPLICATION_CREDENTIALS " + f
	}
	if f := gcloudFile(); f != "" {
		if _, err := os.Stat(f); err == nil {
			return "gcloud ADC file " + f
		}
	}
	if h := os.Getenv("GCE_METADATA_HOST"); h != "" {
		return "metadata server " + h + " (GCE_METADATA_HOST)"
	}
	return "metadata server"
}

// gcloudFile is where gcloud auth application-default login writes, as
// the oauth2 library looks for it.
func gcloudFile() string {
	home := os.Getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".config", "gcloud", "application_default_credentials.json")
}

// keyKind reads a key file's type, and a service account's email (an
// identity, not a secret), for the log.
func keyKind(raw []byte) string {
	var f struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
	}
	if json.Unmarshal(raw, &f) != nil || f.Type == "" {
		return ""
	}
	if f.ClientEmail != "" {
		return f.Type + " " + f.ClientEmail
	}
	return f.Type
}

// seenTokens hands out the source's tokens and remembers the recent ones,
// so that errors can be scrubbed of them even after a refresh.
type seenTokens struct {
	src oauth2.TokenSource

	mu     sync.Mutex
	recent []string
}

// Token returns the source's token (cached by it until near expiry).
func (s *seenTokens) Token() (*oauth2.Token, error) {
	tok, err := s.src.Token()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok.AccessToken != "" && (len(s.recent) == 0 || s.recent[len(s.recent)-1] != tok.AccessToken) {
		// The last few: a token is valid for an hour, refreshed before.
		s.recent = append(s.recent[max(0, len(s.recent)-3):], tok.AccessToken)
	}
	return tok, nil
}

func (s *seenTokens) secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.recent...)
}

// httpClient is the client the Compute service sends through: the token
// added only to requests for the API's own host, answers capped, every
// request counted, no redirect to another host.
func (p *Provider) httpClient(base *url.URL) *http.Client {
	plain, _ := p.meter.Client(p.opts.HTTPClient)
	next := plain.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	client := *plain
	client.Transport = &sameHost{
		scheme: base.Scheme, host: base.Host,
		next: &oauth2.Transport{
			// ADC's sources cache their token until near expiry.
			Source: p.tokens,
			// Unchanged pages are recognised above the cap, so what is
			// read and hashed is bounded as the SDK's own reading is.
			Base: platform.SkipUnchanged(p.meter.Transport(capped{next})),
		},
	}
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != base.Scheme || req.URL.Host != base.Host {
			return fmt.Errorf("redirect to %s refused: credentials go to %s only", req.URL.Host, base.Host)
		}
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		return nil
	}
	return &client
}

// sameHost refuses, before a token is added, any request that is not for
// the API's host.
type sameHost struct {
	scheme, host string
	next         http.RoundTripper
}

func (t *sameHost) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != t.scheme || r.URL.Host != t.host {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("request to %s://%s refused: credentials go to %s://%s only", r.URL.Scheme, r.URL.Host, t.scheme, t.host)
	}
	return t.next.RoundTrip(r)
}

// capped limits every answer's body to maxBody: reading further fails
// with errTooLarge, so a runaway answer is a malformed one.
type capped struct{ next http.RoundTripper }

func (t capped) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = &capBody{rc: resp.Body, left: maxBody}
	}
	return resp, err
}

type capBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *capBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly maxBody from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, platform.Transient(fmt.Errorf("answer larger than %d bytes", maxBody))
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *capBody) Close() error { return b.rc.Close() }
