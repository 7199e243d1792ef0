package bridgetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ConsulVersion is the Consul release .ci/run builds for the tests.
const ConsulVersion = "v1.20.6"

// ConsulBinary finds the consul program: $PEERBRIDGE_CONSUL_BIN, else
// consul on the PATH, else where .ci/run caches its build. Without one
// the test is skipped loudly, or fails under CI.
func ConsulBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("PEERBRIDGE_CONSUL_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("consul"); err == nil {
		return bin
	}
	if cache, err := os.UserCacheDir(); err == nil {
		bin := filepath.Join(cache, "peerbridge", "consul-"+ConsulVersion, "consul")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	const hint = "bash .ci/run builds it, or set PEERBRIDGE_CONSUL_BIN"
	if CI() {
		t.Fatalf("no consul binary, and CI=true: %s", hint)
	}
	t.Skipf("SKIPPED: no consul binary (%s); this test needs a real Consul agent", hint)
	return ""
}

// Consul is a dev-mode agent on loopback: in memory, so a restart starts
// empty.
type Consul struct {
	t     testing.TB
	bin   string
	args  []string
	ports [4]int // http, serf lan, serf wan, server rpc
	// Addr is the HTTP API address, host:port.
	Addr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// StartConsul starts `consul agent -dev` on free loopback ports and stops it
// when the test ends. hcl, if given, is extra agent configuration (ACLs).
func StartConsul(t testing.TB, hcl string) *Consul {
	t.Helper()
	c := &Consul{t: t, bin: ConsulBinary(t)}
	if hcl != "" {
		c.args = []string{"-hcl", hcl}
	}
	for attempt := 1; ; attempt++ {
		c.pickPorts()
		err := c.start()
		if err == nil {
			break
		}
		// A port taken between picking and binding: pick again.
		if attempt == 3 {
			t.Fatalf("consul did not start: %v\n%s", err, c.logText())
		}
	}
	t.Cleanup(c.Stop)
	return c
}

func (c *Consul) pickPorts() {
	for i := range c.ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.t.Fatal(err)
		}
		c.ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	c.Addr = "127.0.0.1:" + strconv.Itoa(c.ports[0])
}

func (c *Consul) start() error {
	args := append([]string{
		"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(c.ports[0]),
		"-serf-lan-port", strconv.Itoa(c.ports[1]),
		"-serf-wan-port", strconv.Itoa(c.ports[2]),
		"-server-port", strconv.Itoa(c.ports[3]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-log-level", "warn",
	}, c.args...)
	cmd := exec.Command(c.bin, args...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.mu.Lock()
	c.cmd, c.logs = cmd, logs
	c.mu.Unlock()

	// Ready once it has elected itself leader.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("consul exited")
		default:
		}
		resp, err := http.Get("http://" + c.Addr + "/v1/status/leader")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && len(bytes.Trim(b.Bytes(), "\"\n")) > 0 && c.nodeRegistered() {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Stop()
	return fmt.Errorf("no leader after 30s")
}

// managementToken finds the management token in ACL configuration.
var managementToken = regexp.MustCompile(`initial_management\s*=\s*"([^"]+)"`)

// nodeRegistered reports whether the agent's own node is in the catalog.
// A leader is elected before the agent has synced its node there, and
// until it has, a session on that node fails with "Missing node
// registration": a test that takes a lock at once failed so under load.
func (c *Consul) nodeRegistered() bool {
	req, err := http.NewRequest("GET", "http://"+c.Addr+"/v1/catalog/nodes", nil)
	if err != nil {
		return false
	}
	// With ACLs on, an anonymous read sees no node: ask as the
	// management token the test configured.
	if m := managementToken.FindStringSubmatch(strings.Join(c.args, " ")); m != nil {
		req.Header.Set("X-Consul-Token", m[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var nodes []struct{ Node string }
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&nodes) == nil && len(nodes) > 0
}

// Stop kills the agent; its catalog is gone.
func (c *Consul) Stop() {
	c.mu.Lock()
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	// Wait for the ports to be free again, so that Restart can bind them.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("tcp", c.Addr); err != nil {
			return
		} else {
			conn.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts the agent again on the same ports, empty.
func (c *Consul) Restart() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatalf("consul did not restart: %v\n%s", err, c.logText())
	}
}

func (c *Consul) logText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logs == nil {
		return ""
	}
	return c.logs.String()
}
