// Package platform is the plumbing every provider that polls a platform's
// HTTP API shares, the way Prometheus' discovery/refresh serves its
// discoverers: what an answer means for the reconcile loop (rejected
// credentials, rate limits, transient faults), a size-capped JSON GET, a
// bounded "skipped, logged once" record, and scrubbing secrets from error
// text before it reaches a log line, /status or check.
package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// Rules say how one platform's API reports trouble.
type Rules struct {
	// TokenVariable names what to check when the API rejects the
	// credentials (DIGITALOCEAN_TOKEN, HCLOUD_TOKEN); empty for APIs
	// without credentials.
	TokenVariable string
	// WaitForReset makes a 429 without Retry-After wait until the
	// RateLimit-Reset time when nothing remains. Right for DigitalOcean,
	// whose reset is when the oldest request leaves the window; wrong for
	// Hetzner, whose reset is when the whole hour's budget is back while
	// a request refills every second.
	WaitForReset bool
}

// Classify sorts an API call's outcome for the loop. resp is the HTTP
// answer, nil when there was none; err is the client's error (or a
// description of the non-2xx answer). Rejected credentials are permanent
// until someone acts; 429 carries the server's wait; 408, 5xx, timeouts,
// connection errors and malformed bodies are transient. A cancelled
// context passes through unchanged: shutting down is no failure.
func (r Rules) Classify(resp *http.Response, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if resp == nil {
		return Transient(err)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		hint := ""
		if r.TokenVariable != "" {
			hint = ", check " + r.TokenVariable
		}
		return fmt.Errorf("%w (HTTP %d%s): %w", bridge.ErrCredentials, code, hint, err)
	case code == http.StatusTooManyRequests:
		wait := RetryAfter(resp.Header, time.Now())
		if wait == 0 && r.WaitForReset {
			wait = UntilReset(resp.Header, time.Now())
		}
		return &RateLimited{Wait: wait, Err: err}
	case code == http.StatusRequestTimeout || code >= 500:
		return Transient(err)
	default:
		return err
	}
}

// Inconsistent marks err as a listing whose pages disagree (the same id
// twice, a total that changed between pages): it wraps
// bridge.ErrInconsistentListing, on which the loop lists again once, and
// is transient, as a listing taken while the cluster changed is.
func Inconsistent(err error) error {
	return Transient(fmt.Errorf("%w: %w", bridge.ErrInconsistentListing, err))
}

// Transient marks err as expected to go away by itself.
func Transient(err error) error {
	if err == nil || errors.Is(err, bridge.ErrTransient) {
		return err
	}
	return fmt.Errorf("%w: %w", bridge.ErrTransient, err)
}

// RetryAfter reads a Retry-After header, in seconds or as an HTTP date
// (RFC 9110 10.2.3); zero when absent, unreadable or past, and at most
// bridge.MaxRetryAfter.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		// Compared in seconds: multiplying first would overflow.
		if s > int64(bridge.MaxRetryAfter/time.Second) {
			return bridge.MaxRetryAfter
		}
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return until(now, t)
	}
	return 0
}

// UntilReset is how long until RateLimit-Reset (a Unix time) when
// RateLimit-Remaining says nothing is left; zero otherwise, and at most
// bridge.MaxRetryAfter.
func UntilReset(h http.Header, now time.Time) time.Duration {
	if strings.TrimSpace(h.Get("RateLimit-Remaining")) != "0" {
		return 0
	}
	reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("RateLimit-Reset")), 10, 64)
	if err != nil {
		return 0
	}
	// Compared in seconds first: time.Unix overflows near the int64 limit.
	if reset > now.Unix() && reset-now.Unix() > int64(bridge.MaxRetryAfter/time.Second) {
		return bridge.MaxRetryAfter
	}
	return until(now, time.Unix(reset, 0))
}

// until is how long from now to t, within 0 and bridge.MaxRetryAfter.
// Time.Sub saturates rather than overflows, so a date in the year 9999 is
// capped here, not turned negative.
func until(now, t time.Time) time.Duration {
	if !t.After(now) {
		return 0
	}
	if t.After(now.Add(bridge.MaxRetryAfter)) {
		return bridge.MaxRetryAfter
	}
	return t.Sub(now)
}

// RateLimited is a 429, with the wait the server asked for (zero: the
// loop's own backoff decides).
type RateLimited struct {
	Wait time.Duration
	Err  error
}

func (e *RateLimited) Error() string {
	if e.Wait > 0 {
		return fmt.Sprintf("rate limited, retry in %s: %v", e.Wait, e.Err)
	}
	return fmt.Sprintf("rate limited: %v", e.Err)
}

// Unwrap returns the client's error.
func (e *RateLimited) Unwrap() error { return e.Err }

// RetryAfter is the server's wait; it makes RateLimited a
// bridge.RetryAfterError.
func (e *RateLimited) RetryAfter() time.Duration { return e.Wait }

// Is makes a rate limit transient.
func (e *RateLimited) Is(target error) bool { return target == bridge.ErrTransient }

// GetJSON reads url into v: at most maxBytes of body, a 2xx status, and
// JSON that decodes. header, if set, is added to the request. Every
// failure comes back classified by rules; the body of an error answer is
// quoted, shortened, in the error.
func GetJSON(ctx context.Context, client *http.Client, rules Rules, url string, header http.Header, maxBytes int64, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("request %s: %w", url, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return rules.Classify(nil, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return rules.Classify(nil, fmt.Errorf("reading %s: %w", req.URL.Path, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return rules.Classify(resp, fmt.Errorf("%s: %s: %s", req.URL.Path, resp.Status, Quote(body)))
	}
	if int64(len(body)) > maxBytes {
		return Transient(fmt.Errorf("%s: answer larger than %d bytes", req.URL.Path, maxBytes))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return Transient(fmt.Errorf("%s: malformed answer: %w", req.URL.Path, err))
	}
	return nil
}

// CheckURL is the one rule for every URL setting of a provider: an
// absolute http or https URL with a host. It returns nil or a
// bridge.SettingError for setting.
func CheckURL(setting, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bridge.Invalid(setting, "%q is not an http(s) URL such as http://host:port/path", raw)
	}
	return nil
}

// Quote shortens an answer body for an error message.
func Quote(body []byte) string {
	const most = 200
	s := strings.TrimSpace(string(body[:min(len(body), most)]))
	if len(body) > most {
		s += "..."
	}
	return strconv.Quote(s)
}

// Scrub replaces every secret that occurs in err's text, so that an API
// that echoes a request (an Authorization header in an error body) cannot
// carry a token into a log line, /status or check. Errors without a
// secret are returned as they are, so errors.Is and errors.As still see
// through them; a scrubbed error keeps its chain too.
func Scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	for _, s := range secrets {
		if len(s) >= 4 { // shorter strings are no secret, and would mangle text
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return bridge.Reword(err, text)
}
