package bridge

// shrinkGuard holds back a set that would empty a topology or cut it by
// more than half until a second consecutive poll returns the same set, so
// that one bad answer from an API never disconnects a cluster.
type shrinkGuard struct {
	held *Set
}

// admit reports whether next may replace cur. Polls that fail in between
// neither confirm nor reset a held set: they carry no news.
func (g *shrinkGuard) admit(cur *Set, next Set) bool {
	if cur == nil || !shrinks(cur.PublishedCount(), next.PublishedCount()) {
		g.held = nil
		return true
	}
	if g.held != nil && g.held.Equal(next) {
		g.held = nil
		return true
	}
	g.held = &next
	return false
}

// holding reports whether a shrunken set waits for confirmation.
func (g *shrinkGuard) holding() bool { return g.held != nil }

// shrinks reports whether going from cur to next published peers empties
// the set or loses more than half of it.
func shrinks(cur, next int) bool {
	if cur == 0 {
		return false
	}
	return next == 0 || 2*(cur-next) > cur
}
