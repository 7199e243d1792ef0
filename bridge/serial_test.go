package bridge

import (
	"testing"
	"time"
)

func TestNextSerial(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		prev, want uint32
	}{
		{0, 1_800_000_000},
		{1_700_000_000, 1_800_000_000},
		{1_800_000_000, 1_800_000_001}, // two changes in one second
		{1_900_000_000, 1_900_000_001}, // clock went back
		{^uint32(0), 1_800_000_000},    // RFC 1982: 1.8e9 follows 2^32-1
	} {
		if got := NextSerial(tc.prev, now); got != tc.want {
			t.Errorf("NextSerial(%d) = %d, want %d", tc.prev, got, tc.want)
		}
	}
}

func TestCompareSerial(t *testing.T) {
	for _, tc := range []struct {
		a, b uint32
		want int
	}{
		{1, 1, 0}, {2, 1, 1}, {1, 2, -1},
		{0, ^uint32(0), 1}, // RFC 1982: 0 follows 2^32-1
		{^uint32(0), 0, -1},
	} {
		if got := CompareSerial(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareSerial(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
