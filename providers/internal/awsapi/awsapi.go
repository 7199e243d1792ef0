// Package awsapi is what the providers that read AWS through
// github.com/aws/aws-sdk-go-v2 (ec2, ecs) share: the SDK's default chain
// of region, credentials and endpoints, the HTTP client they hand the
// SDK (one attempt per request, counted, the answer's size capped),
// scrubbing credentials from error text, and sorting the SDK's errors by
// their AWS error code for the reconcile loop.
package awsapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// ErrNoRegion is LoadConfig's error when the chain names no region.
var ErrNoRegion = errors.New("no AWS region: set AWS_REGION (or region in the profile AWS_PROFILE names)")

// LoadConfig reads the SDK's default chain: region, credentials and
// endpoint from AWS_REGION, AWS_ACCESS_KEY_ID, AWS_PROFILE and the shared
// files, web identity, the ECS task role
// (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI), the instance
// metadata service, AWS_ENDPOINT_URL_<SERVICE> and AWS_ENDPOINT_URL. It
// reads the environment and local files only; credentials are fetched
// when first needed. A missing region is ErrNoRegion.
func LoadConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, ErrNoRegion
	}
	return cfg, nil
}

// CredentialSource says where the default chain will find credentials,
// from the variables alone (no request), for a start-up log line: the
// variable's name, never its value.
func CredentialSource() string {
	switch {
	case os.Getenv("AWS_ACCESS_KEY_ID") != "":
		return "environment (AWS_ACCESS_KEY_ID)"
	case os.Getenv("AWS_PROFILE") != "":
		return "shared files, profile " + os.Getenv("AWS_PROFILE")
	case os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		return "ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		return "container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)"
	}
	return "default chain (shared files, then the instance's role)"
}

// Secrets remembers every secret a provider's credentials held, so that
// errors can be scrubbed of them even after a rotation. The zero value is
// ready.
type Secrets struct {
	mu   sync.Mutex
	list []string
}

// Note remembers the secret parts of creds (and extra, such as the
// container authorization token) and returns all it knows.
func (s *Secrets) Note(creds aws.Credentials, extra ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range append([]string{creds.SecretAccessKey, creds.SessionToken}, extra...) {
		if v != "" && !slices.Contains(s.list, v) {
			s.list = append(s.list, v)
		}
	}
	return slices.Clone(s.list)
}

// Scrub removes every known secret from err's text; creds (the SDK's
// cache, which answers without a request unless they expired) adds the
// current ones.
func (s *Secrets) Scrub(ctx context.Context, creds aws.CredentialsProvider, err error, extra ...string) error {
	var c aws.Credentials
	if creds != nil {
		c, _ = creds.Retrieve(ctx)
	}
	return platform.Scrub(err, s.Note(c, extra...)...)
}

// HTTPClient is the client a provider hands the SDK in place of next:
// it counts every request in n (the service's, not the credential
// chain's), fails an answer body longer than maxBody bytes (0: no cap)
// so that a runaway answer cannot take the process's memory, and gives
// the transport a request body it owns (see ownBody).
func HTTPClient(next aws.HTTPClient, n *atomic.Int64, maxBody int64) aws.HTTPClient {
	return &counting{next: ownBody{next: sameOrigin(next)}, n: n, maxBody: maxBody}
}

// sameOrigin makes the SDK's client follow redirects within the
// endpoint's origin only (platform.SameOrigin). The SDK's own client
// follows a 307 to any host, stripping only Authorization and
// X-Amz-Security-Token: the other host's answer would be published. Its
// client is rebuilt from the same transport (proxy, CA bundle, timeouts)
// and timeout; a client of another kind, which this package cannot look
// into, keeps its own redirect policy.
func sameOrigin(d aws.HTTPClient) aws.HTTPClient {
	switch c := d.(type) {
	case *awshttp.BuildableClient:
		return &http.Client{Transport: c.GetTransport(), Timeout: c.GetTimeout(), CheckRedirect: platform.SameOrigin}
	case *http.Client:
		cc := *c
		own := c.CheckRedirect
		cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if err := platform.SameOrigin(req, via); err != nil || own == nil {
				return err
			}
			return own(req, via)
		}
		return &cc
	case nil:
		return &http.Client{Transport: awshttp.NewBuildableClient().GetTransport(), CheckRedirect: platform.SameOrigin}
	}
	return d
}

// counting counts requests and caps answers.
type counting struct {
	next    aws.HTTPClient
	n       *atomic.Int64
	maxBody int64
}

func (c *counting) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	resp, err := c.next.Do(r)
	if err == nil && c.maxBody > 0 && resp.Body != nil {
		resp.Body = platform.LimitBody(resp.Body, c.maxBody) // past the cap the SDK reports a deserialization error, which is transient
	}
	return resp, err
}

// ownBody hands the transport a request body that nobody else closes.
//
// smithy-go wraps the body it signed in a reader that answers io.EOF to
// WriteTo once closed, and closes it as soon as Do returns. But Do
// returns when the answer's headers arrive, and net/http's writeLoop may
// still be in the request: after the Content-Length bytes it copies the
// body once more to check that nothing is left over, io.Copy takes the
// WriteTo path, and net/http passes that io.EOF on as a write error.
// The writeLoop then closes the connection under the caller, who is still
// reading the answer: "deserialization failed ... use of closed network
// connection", a lost poll. Any fast server can win that race (AWS's
// answer after a slow writeLoop goroutine as much as a loopback fake).
// A request body here is a form or a JSON document of a few kilobytes,
// so reading it into memory first is cheap; an in-memory body also lets
// net/http send headers and body in one write, and GetBody lets it replay
// a request that a reused connection dropped before any byte went out.
type ownBody struct{ next aws.HTTPClient }

func (o ownBody) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return o.next.Do(r)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return o.next.Do(r)
}

// SkipUnchanged is platform.SkipUnchanged for the SDK's HTTPClient: put
// it above HTTPClient, so that what it reads is capped.
func SkipUnchanged(next aws.HTTPClient) aws.HTTPClient { return skipUnchanged{next} }

type skipUnchanged struct{ next aws.HTTPClient }

func (c skipUnchanged) Do(r *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(r)
	return platform.Substitute(r, resp, err)
}
