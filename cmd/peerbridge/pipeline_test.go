package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// earlyReader matches a pipeline stage that may stop reading before the
// writer is done: head, grep that stops at the first match (-q, -m, -l),
// sed that quits, awk that exits. Under `set -o pipefail` the writer's
// SIGPIPE (exit 141) then fails the pipeline, and under `set -e` the
// script, at random: "consul version | head -1" ended .ci/run in 5 of 8
// runs. Capture the output instead: out=$(producer); then read "$out".
var earlyReader = regexp.MustCompile(`^(?:head\b|grep\s(?:.*\s)?-(?:[a-zA-Z]*[qml][a-zA-Z0-9]*\b|-quiet\b|-silent\b|-max-count\b|-files-with-matches\b)|sed\b.*\bq\b|awk\b.*\bexit\b)`)

// earlyReaderPipes returns the pipeline stages of a shell script that read
// from a pipe and may exit before their writer. It follows quotes (so that
// a | in a regular expression or an awk program is not a pipe), comments,
// line continuations and pipelines continued on the next line; it knows no
// here-documents, which the scripts do not use around pipes.
func earlyReaderPipes(script string) []string {
	var found []string
	unquoted(script, func(i int) bool {
		if script[i] != '|' || i+1 < len(script) && (script[i+1] == '|' || script[i+1] == '&') || i > 0 && script[i-1] == '|' {
			return true // not a pipe, or ||, |&
		}
		if stage := strings.TrimSpace(readerStage(script[i+1:])); earlyReader.MatchString(stage) {
			found = append(found, stage)
		}
		return true
	})
	return found
}

// readerStage is the command after a pipe, up to the next unquoted
// separator; it starts on the next line when the pipe ends one.
func readerStage(s string) string {
	s = strings.TrimLeft(s, " \t\n\\")
	end := len(s)
	unquoted(s, func(i int) bool {
		if strings.IndexByte("|;&)\n", s[i]) >= 0 {
			end = i
			return false
		}
		return true
	})
	return s[:end]
}

// unquoted calls f with the index of every character of s outside quotes,
// backslash escapes and comments, until f returns false.
func unquoted(s string, f func(i int) bool) {
	inSingle, inDouble := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inSingle:
			inSingle = c != '\''
		case c == '\\':
			i++
		case inDouble:
			inDouble = c != '"'
		case c == '\'':
			inSingle = true
		case c == '"':
			inDouble = true
		case c == '#' && (i == 0 || strings.IndexByte(" \t\n;|&(", s[i-1]) >= 0):
			for i+1 < len(s) && s[i+1] != '\n' {
				i++
			}
		default:
			if !f(i) {
				return
			}
		}
	}
}

func TestEarlyReaderPipes(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         []string
	}{
		{"head", `"$PEERBRIDGE_CONSUL_BIN" version | head -1`, []string{"head -1"}},
		{"grep -q in a condition", `dig +short x | grep -q . && return 0`, []string{"grep -q ."}},
		{"grep -qE", `curl -s x | grep -qE 'a|b' || true`, []string{"grep -qE 'a|b'"}},
		{"grep --quiet", `x | grep --quiet y`, []string{"grep --quiet y"}},
		{"grep -m", `x | grep -m1 y`, []string{"grep -m1 y"}},
		{"in a command substitution", `v=$(x | head -n 1)`, []string{"head -n 1"}},
		{"continued on the next line", "go test ./... |\n\thead -3", []string{"head -3"}},
		{"sed that quits", `x | sed -n '1p;q'`, []string{"sed -n '1p;q'"}},
		{"awk that exits", "x |\n\tawk '/a/ { print; exit }'", []string{"awk '/a/ { print; exit }'"}},
		{"grep that reads everything", `grep -E '^(ok|FAIL)\s' "$log" | grep -v x || true`, nil},
		{"awk that reads everything", "dnsperf -l 1 |\n\tawk '/Latency/ && !done { print; done = 1 }'", nil},
		{"a pipe in quotes", `echo 'a | head -1' "b | grep -q c"`, nil},
		{"a pipe in a comment", `x # not "x | head -1"`, nil},
		{"or", `x || head -1 y`, nil},
		{"tee", `printf 'x' | tee f >/dev/null`, nil},
		{"length of an array", `[ ${#missing[@]} -gt 0 ] && x | wc -l`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := earlyReaderPipes(tc.script)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("earlyReaderPipes(%q) = %q, want %q", tc.script, got, tc.want)
			}
		})
	}
}

// TestCIScriptPipelines keeps early-exiting readers out of the shell
// scripts under .ci/, which run under set -euo pipefail.
func TestCIScriptPipelines(t *testing.T) {
	scripts := 0
	err := filepath.WalkDir("../../.ci", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if !strings.HasSuffix(path, ".sh") && !(strings.HasPrefix(first, "#!") && strings.Contains(first, "sh")) {
			return nil
		}
		scripts++
		for _, stage := range earlyReaderPipes(string(b)) {
			t.Errorf("%s: %q reads from a pipe and may exit before its writer, which then dies of SIGPIPE and fails the pipeline under pipefail; capture the output first (out=$(cmd)) and read that", strings.TrimPrefix(path, "../../"), stage)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scripts < 2 {
		t.Fatalf("found %d scripts under .ci: the walk is broken", scripts)
	}
}
