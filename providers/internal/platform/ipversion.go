package platform

import (
	"fmt"
	"strings"
)

// IPVersion selects the address families a provider publishes: A, AAAA
// or both.
type IPVersion struct{ V4, V6 bool }

// ParseIPVersion reads "4", "6" or "both".
func ParseIPVersion(s string) (IPVersion, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "4":
		return IPVersion{V4: true}, nil
	case "6":
		return IPVersion{V6: true}, nil
	case "both":
		return IPVersion{V4: true, V6: true}, nil
	}
	return IPVersion{}, fmt.Errorf("%q is not 4, 6 or both", s)
}

// String is the version in the form ParseIPVersion reads.
func (v IPVersion) String() string {
	switch {
	case v.V4 && v.V6:
		return "both"
	case v.V6:
		return "6"
	case v.V4:
		return "4"
	}
	return "none"
}
