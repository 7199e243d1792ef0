package dnsserver

import (
	"log/slog"
	"sync/atomic"
)

// maxNameOctets is the longest a domain name may be on the wire.
const maxNameOctets = 255

// longNames counts the peers left out of a snapshot because their owner
// name would be too long, and logs each name once while it lasts.
// Publish serialises note, so the map needs no lock of its own.
type longNames struct {
	total  atomic.Int64
	logged map[string]bool // the names of the last snapshot
}

func (l *longNames) note(log *slog.Logger, names []string) {
	l.total.Add(int64(len(names)))
	now := make(map[string]bool, len(names))
	for _, n := range names {
		if !l.logged[n] {
			log.Warn("peer skipped: its owner name would be longer than 255 octets", "name", n)
		}
		now[n] = true
	}
	l.logged = now
}

// namesTooLong is how many peers were left out of the records built so
// far because their owner name would exceed 255 octets, counted at every
// rebuild of the zone.
func (s *Server) namesTooLong() int64 { return s.long.total.Load() }
