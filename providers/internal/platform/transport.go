package platform

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ErrRedirect marks a redirect the client refused to follow: one that
// leaves the origin (scheme, host and port) the request was sent to. A
// provider's credentials and trust go to the configured API host only,
// and an answer from anywhere else is no listing of the cluster.
var ErrRedirect = errors.New("redirect to another host refused")

// maxRedirects is net/http's own limit, kept for redirects within the
// origin.
const maxRedirects = 10

// SameOrigin is a CheckRedirect policy: it follows a redirect only to
// the origin of the first request. It is needed as well as net/http's
// removal of Authorization on a cross-host redirect, because a transport
// that adds credentials beneath http.Client (a bearer token, a signature)
// adds them again to the redirected request, and because a listing from
// another host must never be published.
func SameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	first := via[0].URL
	if !strings.EqualFold(req.URL.Scheme, first.Scheme) || !strings.EqualFold(req.URL.Host, first.Host) {
		status := 0
		if req.Response != nil {
			status = req.Response.StatusCode
		}
		// The target's origin only: its path or query may carry anything.
		return fmt.Errorf("%w: %s answered %d with a redirect to %s://%s; credentials go to the configured host only",
			ErrRedirect, first.Host, status, req.URL.Scheme, req.URL.Host)
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

// Guard returns a copy of base whose redirects stay within the first
// request's origin (SameOrigin, then base's own policy, if any) and whose
// answers' bodies are capped at maxBody bytes (LimitBodies). Every client
// a provider talks to an API or a metadata service with goes through it,
// so that no SDK can follow a redirect elsewhere or read without bound.
func Guard(base *http.Client, maxBody int64) *http.Client {
	c := *base
	own := base.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := SameOrigin(req, via); err != nil {
			return err
		}
		if own != nil {
			return own(req, via)
		}
		return nil
	}
	c.Transport = LimitBodies(base.Transport, maxBody)
	return &c
}

// MaxBody is a generous cap on one answer of a listing of perPage items
// of at most perItem bytes each, and 1 MiB besides (the envelope, an
// error's body). It bounds what an API, or anything posing as one, can
// make the bridge read and hold in memory.
func MaxBody(perPage int, perItem int64) int64 {
	return int64(perPage)*perItem + 1<<20
}

// TooLargeError is the error of reading past a body's cap.
type TooLargeError struct{ Max int64 }

func (e *TooLargeError) Error() string {
	if e.Max >= 1<<20 {
		return fmt.Sprintf("answer larger than %d MiB", e.Max>>20)
	}
	return fmt.Sprintf("answer larger than %d bytes", e.Max)
}

// LimitBodies returns a transport (next; nil means
// http.DefaultTransport) whose answers' bodies fail with a TooLargeError
// once more than maxBody bytes have been read: the SDK reading it then
// fails the request, and the poll is no news.
func LimitBodies(next http.RoundTripper, maxBody int64) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &limitTransport{next: next, max: maxBody}
}

type limitTransport struct {
	next http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = LimitBody(resp.Body, t.max)
	}
	return resp, err
}

// LimitBody returns rc passing at most max bytes on, and a TooLargeError
// rather than a silent end when there are more: the cap of LimitBodies,
// for a client that is no transport (an SDK's Do).
func LimitBody(rc io.ReadCloser, max int64) io.ReadCloser {
	return &limitedBody{rc: rc, left: max, max: max}
}

// limitedBody passes at most max bytes on, and an error rather than a
// silent end when there is more.
type limitedBody struct {
	rc        io.ReadCloser
	left, max int64
	err       error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// One byte more than is left tells a body of exactly max bytes from
	// a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		b.err = &TooLargeError{Max: b.max}
		return n, b.err
	}
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
