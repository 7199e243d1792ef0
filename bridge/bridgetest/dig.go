package bridgetest

import (
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Dig asks the DNS server at addr (host:port) for name and qtype with the
// real dig program, once, and returns its +short answer lines, sorted;
// none when the name has no records. It fails the test when dig cannot
// run or gets no answer, and skips (fails under CI) without dig.
func Dig(t testing.TB, addr, name, qtype string) []string {
	t.Helper()
	dig := RequireTool(t, "dig", "apt-get install dnsutils")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dig, "@"+host, "-p", port, "+time=2", "+tries=1", "+short", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
	}
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}
