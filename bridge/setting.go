package bridge

import (
	"errors"
	"fmt"
)

// SettingError is a configuration problem found by the package that uses
// the setting (a provider's or the DNS server's options). Setting is the
// variable's name without the PEERBRIDGE_ prefix and without a topology's
// part (DROPLET_TAG, DNS_TTL): the command maps it to the variable that
// was actually set, plain or per topology, so that every rule lives in
// one place and every message names the variable.
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Err.Error() }

// Unwrap returns the problem.
func (e *SettingError) Unwrap() error { return e.Err }

// Invalid returns a SettingError for setting.
func Invalid(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// SettingErrors returns every SettingError in err, which may be joined
// (errors.Join) or wrapped, in order.
func SettingErrors(err error) []*SettingError {
	var out []*SettingError
	var walk func(error)
	walk = func(err error) {
		var se *SettingError
		switch {
		case err == nil:
		case errors.As(err, &se) && se == err:
			out = append(out, se)
		default:
			switch u := err.(type) {
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					walk(e)
				}
			case interface{ Unwrap() error }:
				walk(u.Unwrap())
			}
		}
	}
	walk(err)
	return out
}
