// Package statefile keeps every topology's last published peer set, and
// the DNS serial, in a file that survives the process: a restart serves
// the saved sets at once, before its first poll, and never a serial
// below the saved one. The file is replaced atomically (a temporary file
// in the same directory, fsync, rename, fsync of the directory), so a
// kill at any moment leaves the old file or the new one, never a torn
// one.
package statefile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// version is the file format's version; a file of another is ignored.
const version = 1

// State is the file's content.
type State struct {
	Version int `json:"version"`
	// Serial is the DNS serial last served with these sets.
	Serial     uint32              `json:"serial"`
	Topologies map[string]Topology `json:"topologies"`
}

// Topology is one topology's saved set.
type Topology struct {
	// Provider and Fingerprint identify what made the set: a set is
	// only used again by a topology with the same provider and the same
	// fingerprint of its filters and settings.
	Provider    string `json:"provider"`
	Fingerprint string `json:"fingerprint"`
	// At is when the set last changed.
	At    time.Time `json:"at"`
	Peers []Peer    `json:"peers"`
}

// Peer is a bridge.Peer as saved.
type Peer struct {
	Name   string            `json:"name"`
	ID     string            `json:"id,omitempty"`
	Addrs  []netip.Addr      `json:"addrs"`
	Port   uint16            `json:"port,omitempty"`
	Health bridge.Health     `json:"health,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

// Load reads the file at path. A missing file is an error that wraps
// fs.ErrNotExist (a first start); anything else that cannot be read or
// parsed is an error that says why.
func Load(path string) (State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	if st.Version != version {
		return State{}, fmt.Errorf("%s: format version %d, this build reads %d", path, st.Version, version)
	}
	return st, nil
}

// Seed returns the saved set of a topology made with provider and
// fingerprint, as svc's, or why there is none to use.
func (st State) Seed(svc bridge.Service, fingerprint string) (*bridge.Seed, error) {
	t, ok := st.Topologies[svc.Topology]
	switch {
	case !ok:
		return nil, errors.New("no set saved for the topology")
	case t.Provider != svc.Provider:
		return nil, fmt.Errorf("saved by provider %s, configured %s", t.Provider, svc.Provider)
	case t.Fingerprint != fingerprint:
		return nil, errors.New("saved with other filters or settings")
	}
	set := bridge.Set{Service: svc, Peers: make([]bridge.Peer, len(t.Peers))}
	for i, p := range t.Peers {
		set.Peers[i] = bridge.Peer{Name: p.Name, ID: p.ID, Addrs: p.Addrs, Port: p.Port, Health: p.Health, Attrs: p.Attrs}
	}
	return &bridge.Seed{Set: set.Normalize(), Source: bridge.SourceSaved, At: t.At}, nil
}

// Options configure a Store.
type Options struct {
	Path string
	// Fingerprints are the configured topologies' fingerprints: only
	// their sets are saved.
	Fingerprints map[string]string
	// Serial returns the DNS serial served now; it is saved with the sets.
	Serial func() uint32
	// Initial is what was loaded at start: its sets of configured
	// topologies are kept until their topologies publish anew.
	Initial State
	Logger  *slog.Logger
	// now is time.Now but in tests.
	now func() time.Time
}

// Store is a bridge.Publisher that saves every set it is given. Publish
// only records the set and signals Run, which writes: bursts of changes
// coalesce into one write, and no publisher waits for a disk.
type Store struct {
	opts  Options
	log   *slog.Logger
	dirty chan struct{}

	mu     sync.Mutex
	topos  map[string]Topology
	serial uint32 // the last serial written

	// writes counts files written, for tests.
	writes int
}

// New checks that path's directory takes a new file (a path that cannot
// be written is a start-up error, not a surprise at the first change)
// and returns a store.
func New(opts Options) (*Store, error) {
	if err := CheckPath(opts.Path); err != nil {
		return nil, err
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, log: log, dirty: make(chan struct{}, 1), topos: map[string]Topology{}}
	for name, t := range opts.Initial.Topologies {
		if fp, ok := opts.Fingerprints[name]; ok && fp == t.Fingerprint {
			s.topos[name] = t
		}
	}
	s.serial = opts.Initial.Serial
	// Temporary files of a run killed mid-write: never the file itself.
	if leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(opts.Path), "."+filepath.Base(opts.Path)+".tmp-*")); err == nil {
		for _, f := range leftovers {
			os.Remove(f)
		}
	}
	return s, nil
}

// CheckPath reports why a state file could not be written at path: its
// directory must take a new file, and path must not be a directory.
func CheckPath(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".probe-*")
	if err != nil {
		return fmt.Errorf("cannot write in the file's directory: %w", err)
	}
	f.Close()
	os.Remove(f.Name())
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// Publish records set as its topology's last published set. It never
// blocks on the disk.
func (s *Store) Publish(_ context.Context, set bridge.Set) error {
	fp, ok := s.opts.Fingerprints[set.Service.Topology]
	if !ok {
		return nil
	}
	s.mu.Lock()
	old, had := s.topos[set.Service.Topology]
	if had && old.Provider == set.Service.Provider && old.Fingerprint == fp && samePeers(old.Peers, set.Peers) {
		s.mu.Unlock()
		return nil
	}
	t := Topology{Provider: set.Service.Provider, Fingerprint: fp, At: s.opts.now().UTC(), Peers: make([]Peer, len(set.Peers))}
	for i, p := range set.Peers {
		t.Peers[i] = Peer{Name: p.Name, ID: p.ID, Addrs: p.Addrs, Port: p.Port, Health: p.Health, Attrs: p.Attrs}
	}
	s.topos[set.Service.Topology] = t
	s.mu.Unlock()
	s.Changed()
	return nil
}

// Changed asks Run to write the file soon, e.g. because the serial grew.
func (s *Store) Changed() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

func samePeers(saved []Peer, peers []bridge.Peer) bool {
	if len(saved) != len(peers) {
		return false
	}
	for i, p := range peers {
		q := saved[i]
		if q.Name != p.Name || q.ID != p.ID || q.Port != p.Port || q.Health != p.Health ||
			!equalAddrs(q.Addrs, p.Addrs) || !maps.Equal(q.Attrs, p.Attrs) {
			return false
		}
	}
	return true
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Run writes the file whenever something changed, until ctx is done,
// and once more then if anything changed since the last write. A failed
// write is logged and tried again at the next change, or in a second.
func (s *Store) Run(ctx context.Context) error {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			select {
			case <-s.dirty:
				s.write()
			default:
				if failing {
					s.write()
				}
			}
			return nil
		case <-s.dirty:
		case <-retry.C:
		}
		if err := s.write(); err != nil {
			if !failing {
				s.log.Error("cannot save the peer sets, retrying", "path", s.opts.Path, "error", err)
			}
			failing = true
			retry.Reset(time.Second)
		} else if failing {
			s.log.Info("peer sets saved again", "path", s.opts.Path)
			failing = false
		}
	}
}

// Flush writes the file now.
func (s *Store) Flush() error { return s.write() }

// write writes the whole state to a temporary file beside the file,
// syncs it, renames it over the file and syncs the directory, so that
// the rename itself survives a crash.
func (s *Store) write() error {
	s.mu.Lock()
	st := State{Version: version, Topologies: maps.Clone(s.topos), Serial: s.serial}
	if s.opts.Serial != nil {
		if cur := s.opts.Serial(); int32(cur-st.Serial) > 0 || st.Serial == 0 {
			st.Serial = cur
		}
	}
	s.mu.Unlock()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.opts.Path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.opts.Path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.opts.Path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
	}
	s.mu.Lock()
	s.serial = st.Serial
	s.writes++
	s.mu.Unlock()
	return nil
}
