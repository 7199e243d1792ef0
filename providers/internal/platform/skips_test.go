package platform

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

func TestSkips(t *testing.T) {
	logs := &bridgetest.Buffer{}
	s := NewSkips(slog.New(slog.NewTextHandler(logs, nil)))
	logged := func(key string) int { return strings.Count(logs.String(), "key="+key+"\n") }
	poll := func(keys ...string) {
		for _, k := range keys {
			s.Skip(k, "peer skipped", "key", k)
		}
		s.PollDone()
	}

	poll("a", "b")
	poll("a", "b")
	poll("a")
	if logged("a") != 1 || logged("b") != 1 {
		t.Fatalf("a skipped poll after poll is logged more than once:\n%s", logs)
	}
	poll("a") // b gone for a whole poll
	poll("a", "b")
	if logged("b") != 2 {
		t.Errorf("b, back after a poll without it, logged %d times, want 2", logged("b"))
	}
	if s.Total() != 8 {
		t.Errorf("Total = %d, want 8 (every skip counted)", s.Total())
	}

	// Memory: only the keys of the last two polls.
	for i := range 1000 {
		poll(strings.Repeat("x", i%7+1) + string(rune('a'+i%26)))
	}
	s.mu.Lock()
	n := len(s.prev) + len(s.cur)
	s.mu.Unlock()
	if n > 2 {
		t.Errorf("%d keys remembered, want at most 2", n)
	}

	// Without PollDone (a failed poll) the keys stay known.
	s2 := NewSkips(slog.New(slog.NewTextHandler(logs, nil)))
	for range 5 {
		s2.Skip("z", "peer skipped", "key", "z")
	}
	if logged("z") != 1 {
		t.Errorf("z logged %d times within one poll", logged("z"))
	}
	NewSkips(nil).Skip("k", "no logger")
}
