package main

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

// webConfig is PEERBRIDGE_WEB_CONFIG_FILE: the web configuration file
// every Prometheus exporter reads (exporter-toolkit's format: TLS, client
// certificates, basic_auth_users with bcrypt hashes, headers), so that
// Prometheus scrapes /metrics and reads /sd/prometheus with the tls_config
// and basic_auth it already uses for exporters.
//
// The toolkit's own web.Serve puts every path behind the password. The
// probes must not be: /healthz and /readyz reveal only "ok" and "ready",
// and a kubelet probe or the image's own `peerbridge health` holds no
// secret (Kubernetes' API server serves its health endpoints so). So the
// toolkit validates the file and builds the TLS configuration, and this
// file checks the passwords, skipping the probes. Like the toolkit, it
// reads the file again when it changes: certificates and passwords rotate
// without a restart.
type webConfig struct {
	path string

	mu      sync.Mutex
	stamp   fileStamp   // of the file parsed into cfg
	cfg     *web.Config // nil until the first read
	checked map[[32]byte]bool
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// probePaths answer without a password.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true}

// loadWebConfig validates path as the toolkit does (the YAML, the bcrypt
// hashes, the certificate files) and reads it.
func loadWebConfig(path string) (*webConfig, error) {
	if err := web.Validate(path); err != nil {
		return nil, err
	}
	w := &webConfig{path: path}
	if _, err := w.current(); err != nil {
		return nil, err
	}
	return w, nil
}

// current returns the configuration, read again when the file changed. A
// file that became unreadable or invalid keeps the last good one: a typo
// while rotating must not open the endpoints or take them down.
func (w *webConfig) current() (*web.Config, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if err != nil {
		if w.cfg != nil {
			return w.cfg, nil
		}
		return nil, err
	}
	stamp := fileStamp{fi.Size(), fi.ModTime()}
	if w.cfg != nil && stamp == w.stamp {
		return w.cfg, nil
	}
	c, err := readWebConfig(w.path)
	if err != nil {
		if w.cfg != nil {
			return w.cfg, nil
		}
		return nil, err
	}
	w.cfg, w.stamp, w.checked = c, stamp, map[[32]byte]bool{}
	return c, nil
}

// readWebConfig parses the file with the toolkit's types and defaults.
func readWebConfig(path string) (*web.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	return c, nil
}

// tlsEnabled reports whether the file configures TLS.
func (w *webConfig) tlsEnabled() bool {
	c, err := w.current()
	return err == nil && c.TLSConfig.IsEnabled()
}

// handler puts h behind the configured passwords, the probes aside, and
// sets the configured headers.
func (w *webConfig) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := w.current()
		if err != nil {
			http.Error(rw, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		for k, v := range c.HTTPConfig.Header {
			rw.Header().Set(k, v)
		}
		if len(c.Users) == 0 || probePaths[r.URL.Path] || w.authorized(c, r) {
			h.ServeHTTP(rw, r)
			return
		}
		rw.Header().Set("WWW-Authenticate", `Basic realm="peerbridge"`)
		http.Error(rw, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
	})
}

// unknownUserHash is compared against for a user who does not exist, so
// that the time taken does not tell which users do (a hash of a password
// nobody has, at the cost bcrypt's default uses).
var unknownUserHash, _ = bcrypt.GenerateFromPassword([]byte("no user has this password"), bcrypt.DefaultCost)

// authorized checks a request's basic auth. bcrypt costs tens of
// milliseconds by design: a verdict is remembered per user, hash and
// password (by their SHA-256, never the password itself), as the toolkit
// does, so that a scrape every few seconds costs one comparison.
func (w *webConfig) authorized(c *web.Config, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := c.Users[user]
	key := sha256.Sum256([]byte(user + "\x00" + string(hash) + "\x00" + pass))
	w.mu.Lock()
	verdict, seen := w.checked[key]
	w.mu.Unlock()
	if seen {
		return verdict
	}
	want := []byte(hash)
	if !known {
		want = unknownUserHash
	}
	verdict = bcrypt.CompareHashAndPassword(want, []byte(pass)) == nil && known
	w.mu.Lock()
	if len(w.checked) > 1024 { // a client guessing passwords must not grow it
		clear(w.checked)
	}
	w.checked[key] = verdict
	w.mu.Unlock()
	return verdict
}

// serve serves srv on ln, over TLS when the file configures it, with the
// certificates read again for each new connection.
func (w *webConfig) serve(srv *http.Server, ln net.Listener) error {
	c, err := w.current()
	if err != nil {
		return err
	}
	srv.Handler = w.handler(srv.Handler)
	if !c.TLSConfig.IsEnabled() {
		return srv.Serve(ln)
	}
	tc, err := web.ConfigToTLSConfig(&c.TLSConfig)
	if err != nil {
		return fmt.Errorf("PEERBRIDGE_WEB_CONFIG_FILE: %w", err)
	}
	if !c.HTTPConfig.HTTP2 {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	srv.TLSConfig = tc
	tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := w.current()
		if err != nil {
			return nil, err
		}
		next, err := web.ConfigToTLSConfig(&c.TLSConfig)
		if err != nil {
			return nil, err
		}
		next.NextProtos = []string{"http/1.1"}
		if c.HTTPConfig.HTTP2 {
			next.NextProtos = []string{"h2", "http/1.1"}
		}
		return next, nil
	}
	return srv.ServeTLS(ln, "", "")
}
