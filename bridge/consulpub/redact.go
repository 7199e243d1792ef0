package consulpub

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/peerbridge/peerbridge/bridge"
)

// RedactAddr is a Consul address (CONSUL_HTTP_ADDR) fit for a log line:
// the password of its user info hidden, and the usual form without a
// scheme (127.0.0.1:8500) shown as it is.
func RedactAddr(addr string) string {
	if addr == "" {
		return ""
	}
	full := addr
	if !strings.Contains(addr, "://") {
		full = "http://" + addr
	}
	u, err := url.Parse(full)
	if err != nil {
		return redactUserinfo(addr)
	}
	out := u.Redacted()
	if full != addr {
		out = strings.TrimPrefix(out, "http://")
	}
	return out
}

// userinfo is the user:password@ of an address, wherever it appears in
// text: consul/api puts an address with user info into its request URLs'
// host, where net/http's own redaction does not see it, with the @
// escaped (%40) or not.
var userinfo = regexp.MustCompile(`([A-Za-z0-9._~!$&'()*+,;=-]+):[^@\s/]+?(@|%40)`)

func redactUserinfo(s string) string { return userinfo.ReplaceAllString(s, "${1}:xxxxx${2}") }

// scrubbed hides passwords of user info in err's text, keeping its chain.
func scrubbed(err error) error {
	if err == nil {
		return nil
	}
	return bridge.Reword(err, redactUserinfo(err.Error()))
}
