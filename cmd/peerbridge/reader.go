package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/peerbridge/peerbridge/bridge"
)

// reader collects every problem of the environment, one line each,
// naming its variable; the same line is reported once, and a variable
// that could not be read at all only as that.
type reader struct {
	problems   []string
	unreadable map[string]bool
}

func (r *reader) add(variable, format string, args ...any) {
	line := variable + ": " + fmt.Sprintf(format, args...)
	if !r.unreadable[variable] && !slices.Contains(r.problems, line) {
		r.problems = append(r.problems, line)
	}
}

func (r *reader) check(variable string, err error) {
	if err != nil {
		r.add(variable, "%v", err)
	}
}

// settings reports the bridge.SettingError values in err under the
// variables that were set for them (per topology under prefix, or plain),
// and the bridge.VariableErrors under their own names, and reports
// whether there were none. refs are settings a message may name besides
// its own (a provider's: "leave HCLOUD_NETWORK empty"): they are named
// as variables too.
func (r *reader) settings(prefix string, err error, refs ...string) bool {
	if err == nil {
		return true
	}
	var ve *bridge.VariableError
	ses := bridge.SettingErrors(err)
	for _, se := range ses {
		var names []string
		for key := range strings.SplitSeq(se.Setting, ",") {
			names = append(names, varName(prefix, strings.TrimSpace(key)))
		}
		r.add(strings.Join(names, ", "), "%s", nameRefs(se.Err.Error(), prefix, refs))
	}
	for _, e := range unjoin(err) {
		if errors.As(e, &ve) {
			r.add(ve.Variable, "%v", ve.Err)
		} else if len(bridge.SettingErrors(e)) == 0 {
			r.add(cmp.Or(prefix, envPrefix), "%v", e) // unreachable while every rule names its setting
		}
	}
	return false
}

// nameRefs replaces every word of msg (a run of capitals, digits and
// underscores) that is one of refs by the variable set for it.
func nameRefs(msg, prefix string, refs []string) string {
	if len(refs) == 0 {
		return msg
	}
	return refWord.ReplaceAllStringFunc(msg, func(w string) string {
		if slices.Contains(refs, w) {
			return varName(prefix, w)
		}
		return w
	})
}

var refWord = regexp.MustCompile(`[A-Z0-9_]+`)

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// read fills spec's fields from the variables under prefix, one field at
// a time, so that every unreadable value is reported, not only the first
// envconfig meets. With onlySet, fields whose variable is not set keep
// their value (the plain variable's, for a topology).
func (r *reader) read(prefix string, spec any, onlySet bool) {
	keys, err := envKeys(prefix, spec)
	if err != nil {
		r.add(prefix, "%v", err)
		return
	}
	fields, values := leaves(reflect.ValueOf(spec).Elem())
	if len(fields) != len(keys) {
		panic(fmt.Sprintf("envconfig reads %d variables of %d fields", len(keys), len(fields)))
	}
	for i, key := range keys {
		if _, set := os.LookupEnv(key); onlySet && !set {
			continue
		}
		f := fields[i]
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		if err := envconfig.Process(prefix, one.Interface()); err != nil {
			r.add(key, "%s", unreadable(err, f.Type))
			if r.unreadable == nil {
				r.unreadable = map[string]bool{}
			}
			r.unreadable[key] = true
			continue
		}
		values[i].Set(one.Elem().Field(0))
	}
}

// leaves lists v's fields as envconfig reads them: an embedded struct's
// (a provider's Env) in its place.
func leaves(v reflect.Value) ([]reflect.StructField, []reflect.Value) {
	var fields []reflect.StructField
	var values []reflect.Value
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			fs, vs := leaves(v.Field(i))
			fields, values = append(fields, fs...), append(values, vs...)
			continue
		}
		fields, values = append(fields, f), append(values, v.Field(i))
	}
	return fields, values
}

// unreadable says what a value that envconfig could not parse should
// look like, never naming a Go type.
func unreadable(err error, t reflect.Type) string {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return fmt.Sprintf("%q is not a valid duration such as 10s or 1m30s", pe.Value)
	case t == reflect.TypeFor[ttl](), t == reflect.TypeFor[pollInterval]():
		return pe.Err.Error()
	case t.Kind() == reflect.Float64:
		return fmt.Sprintf("%q is not a valid number such as 0.5", pe.Value)
	case t.Kind() == reflect.Bool:
		return fmt.Sprintf("%q is not a valid true or false", pe.Value)
	case t.Kind() == reflect.Uint16:
		return fmt.Sprintf("%q is not a valid port number (0-65535)", pe.Value)
	}
	return fmt.Sprintf("%q is not a valid value", pe.Value)
}

// topologyPrefix is the variable prefix of a topology: web-app reads
// PEERBRIDGE_WEB_APP_*.
func topologyPrefix(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// envKeys lists the variable names envconfig reads for spec, in field
// order, from envconfig itself so the two cannot disagree.
func envKeys(prefix string, spec any) ([]string, error) {
	var buf bytes.Buffer
	if err := envconfig.Usagef(prefix, spec, &buf, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return nil, err
	}
	return strings.Fields(buf.String()), nil
}

// aliases are older names read when the new one is not set.
var aliases = map[string]string{
	"HEALTH_CHECK":   "DROPLET_HEALTH_CHECK",
	"HEALTH_TIMEOUT": "DROPLET_HEALTH_TIMEOUT",
}

// varName is the variable a setting came from: the first that is set of
// the per-topology one, its per-topology alias, the plain one and the
// plain alias; else the plain one.
func varName(prefix, key string) string {
	var candidates []string
	for _, p := range []string{prefix, envPrefix} {
		if p == "" {
			continue
		}
		candidates = append(candidates, p+"_"+key)
		if alias, ok := aliases[key]; ok {
			candidates = append(candidates, p+"_"+alias)
		}
	}
	for _, c := range candidates {
		if _, set := os.LookupEnv(c); set {
			return c
		}
	}
	return envPrefix + "_" + key
}

// pollInterval reads a Go duration, or "auto": as often as the provider's
// API budget allows (bridge.Budget).
type pollInterval struct {
	auto  bool
	every time.Duration
}

func (p *pollInterval) Decode(v string) error {
	if strings.EqualFold(strings.TrimSpace(v), "auto") {
		*p = pollInterval{auto: true}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither a duration such as 10s or 1m30s nor auto", v)
	}
	*p = pollInterval{every: d}
	return nil
}

// ttl reads a TTL as whole seconds ("30") or a Go duration ("30s").
type ttl time.Duration

func (t *ttl) Decode(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*t = ttl(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not whole seconds or a duration, e.g. 30 or 30s", v)
	}
	*t = ttl(d)
	return nil
}
