package main

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/droplet"
	"github.com/peerbridge/peerbridge/providers/ec2"
	"github.com/peerbridge/peerbridge/providers/ecs"
	"github.com/peerbridge/peerbridge/providers/gce"
	"github.com/peerbridge/peerbridge/providers/hcloud"
	"github.com/peerbridge/peerbridge/providers/nomad"
	"github.com/peerbridge/peerbridge/providers/rancher"
	"github.com/peerbridge/peerbridge/providers/static"
)

// providers is the registry: every provider, in the order help, errors
// and docs list them. Adding one is its package (Info, Env, Configure,
// New, Options.LogAttrs) and a line here; everything else in the command
// iterates this list. An explicit list, not init() side effects, so that
// what a binary holds is read here.
var providers = []provider{
	entry(static.Info, static.Configure, static.New),
	entry(droplet.Info, droplet.Configure, droplet.New).
		withVendorEnv(droplet.TokenPrefix, &droplet.TokenEnv{}, "DigitalOcean's token from the first of these that is set"),
	entry(rancher.Info, rancher.Configure, rancher.New),
	entry(hcloud.Info, hcloud.Configure, hcloud.New).
		withVendorEnv(hcloud.CLIPrefix, &hcloud.CLIEnv{}, "the hcloud CLI's variables"),
	entry(ec2.Info, ec2.Configure, ec2.New),
	entry(ecs.Info, ecs.Configure, ecs.New),
	entry(gce.Info, gce.Configure, gce.New),
	entry(nomad.Info, nomad.Configure, nomad.New),
}

// provider is one entry of the registry.
type provider struct {
	bridge.ProviderInfo
	// env is the package's Env type; every topology reads one of each.
	env reflect.Type
	// configure maps a value of type env, and the topology's port, to
	// the provider's source.
	configure func(env any, port uint16) source
	// vendor, if set, documents the vendor variables with their
	// descriptions, for help and CONFIGURATION.md.
	vendor *vendorEnv
}

// vendorEnv is an envconfig spec of a provider's vendor variables.
type vendorEnv struct {
	prefix string
	spec   any
	// what completes "The <name> provider reads ...".
	what string
}

// source is a provider's settings, read from the environment into its
// package's options. err holds what Configure found.
type source struct {
	err     error
	build   func(*slog.Logger) (bridge.Provider, error)
	details []any
	// refs are the settings (suffixes) err's messages may name.
	refs []string
}

// logged is what every provider's options are: they have a Logger field
// (set by reflection, below) and a start-up log line.
type logged interface{ LogAttrs() []any }

// entry makes a registry entry of a provider package's contract.
func entry[E any, O logged, P bridge.Provider](info bridge.ProviderInfo, configure func(E) (O, error), build func(O) (P, error)) provider {
	if f, ok := reflect.TypeFor[O]().FieldByName("Logger"); !ok || f.Type != reflect.TypeFor[*slog.Logger]() {
		panic("provider " + info.Name + ": its Options have no Logger *slog.Logger field")
	}
	if f, ok := reflect.TypeFor[O]().FieldByName("ContainerPort"); info.ContainerPort && (!ok || f.Type != reflect.TypeFor[uint16]()) {
		panic("provider " + info.Name + ": its Options have no ContainerPort uint16 field")
	}
	return provider{
		ProviderInfo: info,
		env:          reflect.TypeFor[E](),
		configure: func(env any, port uint16) source {
			opts, err := configure(env.(E))
			if info.ContainerPort {
				reflect.ValueOf(&opts).Elem().FieldByName("ContainerPort").SetUint(uint64(port))
			}
			return source{
				err:     err,
				details: opts.LogAttrs(),
				build: func(log *slog.Logger) (bridge.Provider, error) {
					reflect.ValueOf(&opts).Elem().FieldByName("Logger").Set(reflect.ValueOf(log))
					p, err := build(opts)
					if err != nil {
						return nil, err
					}
					return p, nil
				},
			}
		},
	}
}

// withVendorEnv documents p's vendor variables: spec is their envconfig
// spec under prefix. Its descriptions may name p's own settings by
// suffix, as its messages do; help names the variables.
func (p provider) withVendorEnv(prefix string, spec any, what string) provider {
	refs, _ := envKeys("", reflect.New(p.env).Interface())
	t := reflect.TypeOf(spec).Elem()
	fields := make([]reflect.StructField, t.NumField())
	for i := range fields {
		fields[i] = t.Field(i)
		fields[i].Tag = reflect.StructTag(refWord.ReplaceAllStringFunc(string(fields[i].Tag), func(w string) string {
			if slices.Contains(refs, w) {
				return envPrefix + "_" + w
			}
			return w
		}))
	}
	p.vendor = &vendorEnv{prefix: prefix, spec: reflect.New(reflect.StructOf(fields)).Interface(), what: what}
	return p
}

// lookupProvider returns the registry's entry for name.
func lookupProvider(name string) (provider, bool) {
	for _, p := range providers {
		if p.Name == name {
			return p, true
		}
	}
	return provider{}, false
}

// providerNames lists the registry's names: "static, droplet or ec2"
// with the conjunction given.
func providerNames(conj string, filter func(provider) bool) string {
	var names []string
	for _, p := range providers {
		if filter == nil || filter(p) {
			names = append(names, p.Name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}

// meteredNames lists the providers whose APIs report their rate limit in
// every answer, which auto polling paces by.
func meteredNames() []string {
	var names []string
	for _, p := range providers {
		if p.Metered {
			names = append(names, p.Name)
		}
	}
	return names
}

// specType is a struct that embeds first's types and every provider's
// Env, so that envconfig (help, the reader) sees them as one spec. It
// is built by reflection because every package names its spec Env,
// which one struct literal cannot embed twice. envconfig flattens
// embedded structs, so the variable names are the Envs' own. Tags of
// first's fields may say {providers}, {default} and {metered}: the
// registry's names, its first, and its metered ones.
func specType(first ...reflect.Type) reflect.Type {
	var fields []reflect.StructField
	for _, t := range first {
		fields = append(fields, reflect.StructField{Name: t.Name(), Type: withRegistryTags(t), Anonymous: true})
	}
	for _, p := range providers {
		name := strings.ToUpper(p.Name[:1]) + p.Name[1:] + "Env"
		fields = append(fields, reflect.StructField{Name: name, Type: p.env, Anonymous: true})
	}
	return reflect.StructOf(fields)
}

// withRegistryTags returns t, or when a tag of its says {providers},
// {default} or {metered} an unnamed struct like it with the registry's names in the
// tags. The two convert into each other, tags aside.
func withRegistryTags(t reflect.Type) reflect.Type {
	r := strings.NewReplacer("{providers}", providerNames("or", nil), "{default}", providers[0].Name,
		"{metered}", strings.Join(meteredNames(), ", "))
	fields := make([]reflect.StructField, t.NumField())
	changed := false
	for i := range fields {
		fields[i] = t.Field(i)
		if tag := r.Replace(string(fields[i].Tag)); tag != string(fields[i].Tag) {
			fields[i].Tag, changed = reflect.StructTag(tag), true
		}
	}
	if !changed {
		return t
	}
	return reflect.StructOf(fields)
}

var (
	topologySpecType = specType(reflect.TypeFor[TopologyEnv]())
	envSpecType      = specType(reflect.TypeFor[GlobalEnv](), reflect.TypeFor[TopologyEnv]())
)

// newEnvSpec returns a pointer to a spec of every PEERBRIDGE_ variable,
// for help and docs.
func newEnvSpec() any { return reflect.New(envSpecType).Interface() }

// topologyEnv is a topology's variables: the common TopologyEnv and
// every provider's Env.
type topologyEnv struct{ v reflect.Value } // a pointer to a topologySpecType

func newTopologyEnv() topologyEnv { return topologyEnv{reflect.New(topologySpecType)} }

// spec is the pointer envconfig reads into.
func (e topologyEnv) spec() any { return e.v.Interface() }

func (e topologyEnv) common() *TopologyEnv {
	return e.v.Elem().Field(0).Addr().Convert(reflect.TypeFor[*TopologyEnv]()).Interface().(*TopologyEnv)
}

// clone copies the values, so that a topology starts from the plain
// variables' and overrides its own.
func (e topologyEnv) clone() topologyEnv {
	c := reflect.New(topologySpecType)
	c.Elem().Set(e.v.Elem())
	return topologyEnv{c}
}

// providerEnv returns p's Env among the values.
func (e topologyEnv) providerEnv(p provider) any {
	for i, q := range providers {
		if q.Name == p.Name {
			return e.v.Elem().Field(1 + i).Interface()
		}
	}
	panic("provider " + p.Name + " is not registered")
}

// providerEnvOf returns the Env of the provider named name among the
// values, nil for a name the registry does not have.
func (e topologyEnv) providerEnvOf(name string) any {
	if p, ok := lookupProvider(name); ok {
		return e.providerEnv(p)
	}
	return nil
}

// newSource maps a topology's variables to its provider.
func newSource(env topologyEnv) source {
	name := env.common().Provider
	p, ok := lookupProvider(name)
	if !ok {
		return source{err: bridge.Invalid("PROVIDER", "%q is not a provider: use %s", name, providerNames("or", nil))}
	}
	src := p.configure(env.providerEnv(p), env.common().Port)
	// A provider's messages may name its other settings by suffix (leave
	// HCLOUD_NETWORK empty), as its SettingErrors do: the reader names
	// the variables that were set instead.
	src.refs, _ = envKeys("", reflect.New(p.env).Interface())
	return src
}

// vendorHelp is help's paragraph on p's vendor variables, "" if none.
func (p provider) vendorHelp() string {
	switch {
	case p.vendor != nil:
		return fmt.Sprintf("The %s provider reads %s:", p.Name, p.vendor.what)
	case len(p.VendorVars) > 0:
		return fmt.Sprintf("The %s provider also reads %s.", p.Name, strings.Join(p.VendorVars, ", "))
	}
	return ""
}
