package platform

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// Skips counts peers a provider skipped (no address of the configured
// kind, ...) and logs each one the first time only: it would otherwise be
// logged on every poll. Its memory is bounded by what recent polls
// skipped: it remembers the keys of the current poll and the one before,
// so a peer skipped poll after poll is logged once, one that was gone for
// a whole poll is logged again, and peers long gone are forgotten.
type Skips struct {
	log   *slog.Logger
	total atomic.Int64

	mu        sync.Mutex
	prev, cur map[string]struct{}
}

// NewSkips returns a record that logs through log (nil discards).
func NewSkips(log *slog.Logger) *Skips {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Skips{log: log, prev: map[string]struct{}{}, cur: map[string]struct{}{}}
}

// Skip counts a skipped peer, identified by key, and logs msg with attrs
// unless the same key was logged on this poll or the previous one.
func (s *Skips) Skip(key, msg string, attrs ...any) {
	s.total.Add(1)
	s.mu.Lock()
	_, seen := s.cur[key]
	if !seen {
		_, seen = s.prev[key]
	}
	s.cur[key] = struct{}{}
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, attrs...)
	}
}

// PollDone ends a complete poll: what it skipped becomes the memory, and
// older keys are forgotten. Call it only after a poll that listed every
// peer, so a failed poll does not make peers be logged again.
func (s *Skips) PollDone() {
	s.mu.Lock()
	s.prev, s.cur = s.cur, make(map[string]struct{}, len(s.cur))
	s.mu.Unlock()
}

// Total is the number of skips so far, counted on every poll.
func (s *Skips) Total() int64 { return s.total.Load() }
