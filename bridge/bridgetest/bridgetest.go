// Package bridgetest holds helpers for peerbridge's tests: finding the real
// programs (dig, consul) that integration tests run against.
package bridgetest

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true), where every tool a
// test needs is installed by .ci/run, so a missing one is a failure.
func CI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of the program a test needs. When it is
// missing the test is skipped with a loud message, or fails under CI.
// hint says how to install it.
func RequireTool(t testing.TB, name, hint string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if CI() {
		t.Fatalf("%s is not installed, and CI=true: .ci/run should have installed it (%s)", name, hint)
	}
	t.Skipf("SKIPPED: %s is not installed (%s); this test needs it", name, hint)
	return ""
}
