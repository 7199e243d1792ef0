package bridge

import "time"

// CompareSerial compares SOA serials in RFC 1982 arithmetic: negative
// when a precedes b, 0 when they are equal, positive when a follows b.
// (Serials 2^31 apart are undefined there; they compare as preceding.)
func CompareSerial(a, b uint32) int {
	switch d := int32(a - b); {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

// NextSerial returns a serial that follows prev: the Unix time when that
// follows it, so that serials keep growing across restarts and when
// Consul starts empty, else prev+1.
func NextSerial(prev uint32, now time.Time) uint32 {
	if t := uint32(now.Unix()); CompareSerial(t, prev) > 0 {
		return t
	}
	return prev + 1
}
