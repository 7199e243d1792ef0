// Package gcetest is a fake of Google Compute Engine for tests, on
// loopback: the Compute API's instances.list and instances.aggregatedList
// answered in compute/v1's own types (maxResults, pageToken paging,
// filter, Google's {"error":{...}} bodies), and the two places Application
// Default Credentials get tokens from: a metadata server (for
// GCE_METADATA_HOST; it insists on Metadata-Flavor: Google) and an OAuth
// token endpoint (for a key file's token_uri: service-account JWT
// assertions, verified, and authorized-user refresh tokens). The API
// accepts only the tokens these issued, so the real ADC path runs.
package gcetest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
)

// Project is the fake's project, which the metadata server and the key
// files name.
const Project = "peerbridge-test-4711"

// Account is the service account of the key files and the metadata server.
const Account = "peerbridge@" + Project + ".iam.gserviceaccount.com"

// RefreshToken is the authorized-user key's refresh token.
const RefreshToken = "1//gcetest-refresh-SECRET-0123456789"

// Fault makes the API answer a request with status, body and header
// instead; status 0 answers normally. page counts from 1; it is -1 for
// a page token the fake did not make.
type Fault func(r *http.Request, page int) (status int, body string, header http.Header)

// World is what the API serves; change it with Set.
type World struct {
	// Zones are the project's zones, as aggregatedList lists them (an
	// entry for every zone, with a NO_RESULTS_ON_PAGE warning when it has
	// no instances on the page).
	Zones []string
	// Instances are the project's instances in every zone.
	Instances []*compute.Instance
	// Unreachable zones make aggregatedList report them in unreachables
	// and with an UNREACHABLE warning, and instances.list in them fail.
	Unreachable []string
	Fault       Fault
}

// Request is one answered API request.
type Request struct {
	URL *url.URL
	// Token is the bearer token it carried.
	Token string
}

// Fake is the API, the metadata server and the token endpoint.
type Fake struct {
	t        testing.TB
	api, sso *httptest.Server

	mu        sync.Mutex
	world     World
	requests  []Request
	tokens    map[string]bool // issued, accepted by the API
	issued    int
	tokenReqs int
	metaReqs  int
	key       *rsa.PrivateKey
}

var (
	keyOnce         sync.Once
	rsaKey, foreign *rsa.PrivateKey
)

// New starts the fake with the zones and instances of world.
func New(t testing.TB, world World) *Fake {
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if foreign, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	f := &Fake{t: t, world: world, tokens: map[string]bool{}, key: rsaKey}
	f.api = httptest.NewServer(http.HandlerFunc(f.serveAPI))
	f.sso = httptest.NewServer(http.HandlerFunc(f.serveAuth))
	t.Cleanup(f.api.Close)
	t.Cleanup(f.sso.Close)
	return f
}

// APIURL is the API's base URL, as PEERBRIDGE_GCE_API_URL takes it.
func (f *Fake) APIURL() string { return f.api.URL + "/compute/v1/" }

// MetadataHost is the metadata server's host:port, for GCE_METADATA_HOST.
func (f *Fake) MetadataHost() string { return strings.TrimPrefix(f.sso.URL, "http://") }

// TokenURL is the token endpoint, a key file's token_uri.
func (f *Fake) TokenURL() string { return f.sso.URL + "/token" }

// Set changes what the API serves, under its lock.
func (f *Fake) Set(fn func(w *World)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.world)
}

// Requests returns the API requests answered so far.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// Tokens returns every access token issued so far.
func (f *Fake) Tokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for t := range f.tokens {
		out = append(out, t)
	}
	return out
}

// TokenRequests and MetadataRequests count the token endpoint's and the
// metadata server's answered requests.
func (f *Fake) TokenRequests() int { f.mu.Lock(); defer f.mu.Unlock(); return f.tokenReqs }

// MetadataRequests counts the metadata server's answered requests.
func (f *Fake) MetadataRequests() int { f.mu.Lock(); defer f.mu.Unlock(); return f.metaReqs }

// ServiceAccountKey writes a service-account key file whose token_uri is
// the fake's, and returns its path (for GOOGLE_APPLICATION_CREDENTIALS).
func (f *Fake) ServiceAccountKey(t testing.TB) string { return f.keyFile(t, f.key) }

// ForeignKey writes a key file for the same account and token endpoint
// with a key the endpoint does not know (deleted, or of another
// account): the endpoint answers invalid_grant.
func (f *Fake) ForeignKey(t testing.TB) string { return f.keyFile(t, foreign) }

func (f *Fake) keyFile(t testing.TB, key *rsa.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writeJSON(t, "key.json", map[string]string{
		"type": "service_account", "project_id": Project, "private_key_id": "0123456789abcdef",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": Account, "client_id": "104729", "token_uri": f.TokenURL(),
		"auth_uri": "https://accounts.google.com/o/oauth2/auth",
	})
}

// UserKey writes gcloud's ADC file (an authorized user) under home, as
// gcloud auth application-default login does, and returns its path.
func (f *Fake) UserKey(t testing.TB, home string) string {
	path := writeJSON(t, "application_default_credentials.json", map[string]string{
		"type": "authorized_user", "client_id": "764086051850-gcetest.apps.googleusercontent.com",
		"client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty", "refresh_token": RefreshToken,
		"quota_project_id": Project, "token_uri": f.TokenURL(),
	})
	dir := filepath.Join(home, ".config", "gcloud")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "application_default_credentials.json")
	if err := os.Rename(path, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

func writeJSON(t testing.TB, name string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a new access token the API will accept. Locked by caller.
func (f *Fake) issue(prefix string) string {
	f.issued++
	tok := fmt.Sprintf("ya29.%s-%d-SECRETtoken%x", prefix, f.issued, time.Now().UnixNano())
	f.tokens[tok] = true
	return tok
}

// tokenAnswer is the OAuth token answer Google's endpoints send.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

func (f *Fake) serveAuth(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/token" {
		f.tokenReqs++
		f.serveToken(w, r)
		return
	}
	f.metaReqs++
	// The metadata server refuses requests without the header (so that a
	// browser or an SSRF cannot read tokens) and marks its answers.
	w.Header().Set("Metadata-Flavor", "Google")
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing required header \"Metadata-Flavor\": \"Google\"", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case "/computeMetadata/v1/project/project-id":
		fmt.Fprint(w, Project)
	case "/computeMetadata/v1/instance/service-accounts/default/token":
		if !strings.Contains(r.URL.Query().Get("scopes"), "compute") {
			http.Error(w, "no compute scope asked for", http.StatusBadRequest)
			return
		}
		writeJSONAnswer(w, tokenAnswer{AccessToken: f.issue("metadata"), ExpiresIn: 3599, TokenType: "Bearer"})
	case "/computeMetadata/v1/instance/service-accounts/default/email":
		fmt.Fprint(w, Account)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// serveToken is Google's token endpoint for the two grants key files use.
func (f *Fake) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		oauthError(w, "invalid_request", "POST a form")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if err := f.verifyJWT(r.PostForm.Get("assertion")); err != nil {
			oauthError(w, "invalid_grant", "Invalid JWT Signature: "+err.Error())
			return
		}
		writeJSONAnswer(w, tokenAnswer{AccessToken: f.issue("sa"), ExpiresIn: 3599, TokenType: "Bearer"})
	case "refresh_token":
		if r.PostForm.Get("refresh_token") != RefreshToken {
			oauthError(w, "invalid_grant", "Bad Request")
			return
		}
		writeJSONAnswer(w, tokenAnswer{AccessToken: f.issue("user"), ExpiresIn: 3599, TokenType: "Bearer"})
	default:
		oauthError(w, "unsupported_grant_type", "Invalid grant_type")
	}
}

// verifyJWT checks a service account's assertion as Google does: RS256
// by the key, issued by the account, for this token endpoint, with the
// compute scope, unexpired.
func (f *Fake) verifyJWT(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	var claims struct {
		Iss   string `json:"iss"`
		Aud   string `json:"aud"`
		Scope string `json:"scope"`
		Exp   int64  `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return err
	}
	switch {
	case claims.Iss != Account:
		return fmt.Errorf("issuer %q", claims.Iss)
	case claims.Aud != f.TokenURL():
		return fmt.Errorf("audience %q", claims.Aud)
	case !strings.Contains(claims.Scope, "compute"):
		return fmt.Errorf("scope %q", claims.Scope)
	case time.Unix(claims.Exp, 0).Before(time.Now()):
		return fmt.Errorf("expired")
	}
	return nil
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeJSONAnswer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		panic(err)
	}
}

// errorBody is the envelope Google's APIs wrap errors in, with
// googleapi.Error's own fields and items (the SDK parses it back into a
// *googleapi.Error).
type errorBody struct {
	Error struct {
		Code    int                   `json:"code"`
		Message string                `json:"message"`
		Errors  []googleapi.ErrorItem `json:"errors"`
		Status  string                `json:"status"`
	} `json:"error"`
}

// Error is an error body as Google sends one: code, message, one item
// with reason, and the canonical status.
func Error(code int, reason, message string) string {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Status = code, message, status(code)
	b.Error.Errors = []googleapi.ErrorItem{{Reason: reason, Message: message}}
	out, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return string(out)
}

func status(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 503:
		return "UNAVAILABLE"
	}
	return "INTERNAL"
}

// Canned faults, as Compute answers them.
var (
	// Forbidden is a 403 for a missing permission.
	Forbidden = Error(403, "forbidden", "Required 'compute.instances.list' permission for 'projects/"+Project+"'")
	// RateLimitExceeded is a 403 for the per-minute quota.
	RateLimitExceeded = Error(403, "rateLimitExceeded", "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service 'compute.googleapis.com'")
	// TooManyRequests is a 429 for the same.
	TooManyRequests = Error(429, "rateLimitExceeded", "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute'")
	// Backend is a 500.
	Backend = Error(500, "backendError", "Internal error. Please try again or contact Google Support.")
)

func (f *Fake) serveAPI(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.requests = append(f.requests, Request{URL: r.URL, Token: tok})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Vary", "Origin, X-Origin, Referer")
	if !f.tokens[tok] {
		reply(w, 401, Error(401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."))
		return
	}
	q := r.URL.Query()
	page, offset := 1, 0
	var tokenErr error
	if pt := q.Get("pageToken"); pt != "" {
		if offset, page, tokenErr = parseToken(pt); tokenErr != nil {
			page = -1 // a token the fake did not make (a fault's)
		}
	}
	if f.world.Fault != nil {
		if code, body, header := f.world.Fault(r, page); code != 0 {
			for k, v := range header {
				w.Header()[k] = v
			}
			reply(w, code, body)
			return
		}
	}
	if tokenErr != nil {
		reply(w, 400, Error(400, "invalid", "Invalid value for field 'pageToken': '"+q.Get("pageToken")+"'. Supplied page token is not valid."))
		return
	}
	if r.Method != http.MethodGet {
		reply(w, 405, Error(405, "httpMethodNotAllowed", "method not allowed"))
		return
	}
	size := 500
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 500 {
			reply(w, 400, Error(400, "invalid", "Invalid value for field 'maxResults': '"+v+"'. Must be less than or equal to 500"))
			return
		}
		if n > 0 {
			size = n
		}
	}
	match, err := parseFilter(q.Get("filter"))
	if err != nil {
		reply(w, 400, Error(400, "invalid", "Invalid value for field 'filter': '"+q.Get("filter")+"'. Invalid list filter expression."))
		return
	}
	const prefix = "/compute/v1/projects/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	project, rest, _ := strings.Cut(rest, "/")
	switch {
	case !ok:
		reply(w, 404, "Not Found")
	case project != Project:
		reply(w, 404, Error(404, "notFound", "The resource 'projects/"+project+"' was not found"))
	case rest == "aggregated/instances":
		f.aggregated(w, match, offset, size, page)
	case strings.HasPrefix(rest, "zones/") && strings.HasSuffix(rest, "/instances"):
		f.zonal(w, strings.TrimSuffix(strings.TrimPrefix(rest, "zones/"), "/instances"), match, offset, size, page)
	default:
		reply(w, 404, "Not Found")
	}
}

func (f *Fake) zonal(w http.ResponseWriter, zone string, match func(*compute.Instance) bool, offset, size, page int) {
	if !slices.Contains(f.world.Zones, zone) {
		reply(w, 400, Error(400, "invalid", "Invalid value for field 'zone': '"+zone+"'. Unknown zone."))
		return
	}
	if slices.Contains(f.world.Unreachable, zone) {
		reply(w, 503, Error(503, "backendError", "The zone '"+zone+"' is unavailable."))
		return
	}
	var all []*compute.Instance
	for _, in := range f.world.Instances {
		if ShortName(in.Zone) == zone && match(in) {
			all = append(all, in)
		}
	}
	items, next := cut(all, offset, size, page)
	f.write(w, compute.InstanceList{
		Kind: "compute#instanceList", Id: "projects/" + Project + "/zones/" + zone + "/instances",
		Items: items, NextPageToken: next,
		SelfLink: "https://www.googleapis.com/compute/v1/projects/" + Project + "/zones/" + zone + "/instances",
	})
}

// aggregated pages through every zone's instances in zone order; each
// page has an entry for every zone, as Compute's has.
func (f *Fake) aggregated(w http.ResponseWriter, match func(*compute.Instance) bool, offset, size, page int) {
	zones := slices.Sorted(slices.Values(f.world.Zones))
	var all []*compute.Instance
	for _, z := range zones {
		if slices.Contains(f.world.Unreachable, z) {
			continue
		}
		for _, in := range f.world.Instances {
			if ShortName(in.Zone) == z && match(in) {
				all = append(all, in)
			}
		}
	}
	items, next := cut(all, offset, size, page)
	list := compute.InstanceAggregatedList{
		Kind: "compute#instanceAggregatedList", Id: "projects/" + Project + "/aggregated/instances",
		Items: map[string]compute.InstancesScopedList{}, NextPageToken: next,
		SelfLink: "https://www.googleapis.com/compute/v1/projects/" + Project + "/aggregated/instances",
	}
	for _, z := range zones {
		key := "zones/" + z
		var scoped compute.InstancesScopedList
		for _, in := range items {
			if ShortName(in.Zone) == z {
				scoped.Instances = append(scoped.Instances, in)
			}
		}
		switch {
		case slices.Contains(f.world.Unreachable, z):
			scoped.Warning = &compute.InstancesScopedListWarning{
				Code: "UNREACHABLE", Message: "The resource '" + key + "' is unreachable.",
				Data: []*compute.InstancesScopedListWarningData{{Key: "scope", Value: key}},
			}
			list.Unreachables = append(list.Unreachables, key)
		case len(scoped.Instances) == 0:
			scoped.Warning = &compute.InstancesScopedListWarning{
				Code: "NO_RESULTS_ON_PAGE", Message: "There are no results for scope '" + key + "' on this page.",
				Data: []*compute.InstancesScopedListWarningData{{Key: "scope", Value: key}},
			}
		}
		list.Items[key] = scoped
	}
	f.write(w, list)
}

func (f *Fake) write(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		f.t.Error(err)
	}
	reply(w, 200, string(b))
}

// cut returns one page of all from offset, and the token of the next.
func cut(all []*compute.Instance, offset, size, page int) ([]*compute.Instance, string) {
	from, to := min(offset, len(all)), min(offset+size, len(all))
	next := ""
	if to < len(all) {
		next = makeToken(to, page+1)
	}
	return all[from:to], next
}

// Page tokens are opaque to clients; these carry the offset and the
// page number.
func makeToken(offset, page int) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "gcetest:%d:%d", offset, page))
}

func parseToken(t string) (offset, page int, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(raw), "gcetest:%d:%d", &offset, &page); err != nil {
		return 0, 0, err
	}
	return offset, page, nil
}

func reply(w http.ResponseWriter, status int, body string) {
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

// parseFilter reads the part of Compute's filter syntax tests use: terms
// `field = value` or `field != value`, alone or each in parentheses
// (joined by AND), on name, status, zone (short name) and labels.KEY;
// values may be quoted. Anything else is an invalid filter, as Compute
// rejects what it cannot read.
func parseFilter(s string) (func(*compute.Instance) bool, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return func(*compute.Instance) bool { return true }, nil
	}
	var terms []string
	if strings.HasPrefix(s, "(") {
		for s != "" {
			if !strings.HasPrefix(s, "(") {
				return nil, fmt.Errorf("expected (")
			}
			end := strings.IndexByte(s, ')')
			if end < 0 {
				return nil, fmt.Errorf("unclosed (")
			}
			terms = append(terms, s[1:end])
			s = strings.TrimSpace(s[end+1:])
			s = strings.TrimSpace(strings.TrimPrefix(s, "AND "))
		}
	} else {
		terms = []string{s}
	}
	var preds []func(*compute.Instance) bool
	for _, term := range terms {
		op := "="
		field, value, ok := strings.Cut(term, "!=")
		if ok {
			op = "!="
		} else if field, value, ok = strings.Cut(term, "="); !ok {
			return nil, fmt.Errorf("%q: no operator", term)
		}
		field, value = strings.TrimSpace(field), strings.Trim(strings.TrimSpace(value), `"`)
		var get func(*compute.Instance) string
		switch {
		case field == "name":
			get = func(in *compute.Instance) string { return in.Name }
		case field == "status":
			get = func(in *compute.Instance) string { return in.Status }
		case field == "zone":
			get = func(in *compute.Instance) string { return ShortName(in.Zone) }
		case strings.HasPrefix(field, "labels."):
			key := strings.TrimPrefix(field, "labels.")
			get = func(in *compute.Instance) string { return in.Labels[key] }
		default:
			return nil, fmt.Errorf("unknown field %q", field)
		}
		preds = append(preds, func(in *compute.Instance) bool { return (get(in) == value) == (op == "=") })
	}
	return func(in *compute.Instance) bool {
		for _, p := range preds {
			if !p(in) {
				return false
			}
		}
		return true
	}, nil
}

// ShortName is the last segment of a resource URL.
func ShortName(u string) string { return u[strings.LastIndexByte(u, '/')+1:] }

// Instance returns an instance shaped as Compute lists one: id 1000+i,
// named name, in zone with status; nic0 in network "default" with
// private 10.<i/250>.<i%250>.2, an external NAT address 198.18.<i/250>.<i%250+1>,
// and an external IPv6 2001:db8:<i+1>::; machine type e2-small, the
// labels, and the network tags.
func Instance(i int, name, zone, status string, labels map[string]string, tags ...string) *compute.Instance {
	base := "https://www.googleapis.com/compute/v1/projects/" + Project
	in := &compute.Instance{
		Kind: "compute#instance", Id: uint64(1000 + i), Name: name, Status: status,
		Zone:              base + "/zones/" + zone,
		MachineType:       base + "/zones/" + zone + "/machineTypes/e2-small",
		CreationTimestamp: "2026-11-02T03:04:05.000-07:00",
		CanIpForward:      false, CpuPlatform: "Intel Broadwell",
		SelfLink: base + "/zones/" + zone + "/instances/" + name,
		Labels:   labels,
		NetworkInterfaces: []*compute.NetworkInterface{{
			Kind: "compute#networkInterface", Name: "nic0", StackType: "IPV4_IPV6",
			Network:    base + "/global/networks/default",
			Subnetwork: base + "/regions/" + region(zone) + "/subnetworks/default",
			NetworkIP:  fmt.Sprintf("10.%d.%d.2", i/250, i%250),
			AccessConfigs: []*compute.AccessConfig{{
				Kind: "compute#accessConfig", Name: "External NAT", Type: "ONE_TO_ONE_NAT",
				NatIP: fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), NetworkTier: "PREMIUM",
			}},
			Ipv6AccessConfigs: []*compute.AccessConfig{{
				Kind: "compute#accessConfig", Name: "external-ipv6", Type: "DIRECT_IPV6",
				ExternalIpv6: fmt.Sprintf("2001:db8:%x::", i+1), ExternalIpv6PrefixLength: 96, NetworkTier: "PREMIUM",
			}},
			Fingerprint: "abcdefgh123=",
		}},
		Disks: []*compute.AttachedDisk{{
			Kind: "compute#attachedDisk", Boot: true, AutoDelete: true, DeviceName: name, Mode: "READ_WRITE",
			Source: base + "/zones/" + zone + "/disks/" + name, Type: "PERSISTENT", DiskSizeGb: 10, Interface: "SCSI",
		}},
		Metadata: &compute.Metadata{Kind: "compute#metadata", Fingerprint: "xyz=", Items: []*compute.MetadataItems{
			{Key: "startup-script", Value: ptr("#!/bin/sh\necho hello\n")},
		}},
		Scheduling:  &compute.Scheduling{OnHostMaintenance: "MIGRATE", AutomaticRestart: ptr(true), ProvisioningModel: "STANDARD"},
		Fingerprint: "fp" + strconv.Itoa(i), LabelFingerprint: "lf" + strconv.Itoa(i),
	}
	if len(tags) > 0 {
		in.Tags = &compute.Tags{Items: tags, Fingerprint: "tf" + strconv.Itoa(i)}
	} else {
		in.Tags = &compute.Tags{Fingerprint: "42WmSpB8rSM="}
	}
	return in
}

func region(zone string) string { return zone[:max(0, strings.LastIndexByte(zone, '-'))] }

func ptr[T any](v T) *T { return &v }
