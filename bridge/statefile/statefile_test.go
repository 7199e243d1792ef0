package statefile

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerbridge/peerbridge/bridge"
)

var svc = bridge.Service{Topology: "web", Name: "web", Provider: "droplet", Port: 4369}

func set(addrs ...string) bridge.Set {
	s := bridge.Set{Service: svc}
	for i, a := range addrs {
		s.Peers = append(s.Peers, bridge.Peer{Name: "p" + string(rune('a'+i)), ID: a, Addrs: []netip.Addr{netip.MustParseAddr(a)},
			Port: uint16(i), Attrs: map[string]string{"region": "ams3"}})
	}
	return s.Normalize()
}

func newStore(t *testing.T, path string, initial State, serial *uint32) *Store {
	t.Helper()
	s, err := New(Options{Path: path, Fingerprints: map[string]string{"web": "fp1"}, Initial: initial,
		Serial: func() uint32 { return *serial }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
	serial := uint32(4_000_000_000)
	s := newStore(t, path, State{}, &serial)
	want := set("10.0.0.1", "10.0.0.2", "fd00::3")
	s.Publish(context.Background(), want)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Serial != serial {
		t.Errorf("serial %d, want %d", st.Serial, serial)
	}
	seed, err := st.Seed(svc, "fp1")
	if err != nil {
		t.Fatal(err)
	}
	if !seed.Set.Equal(want) || seed.Source != bridge.SourceSaved || seed.At.IsZero() {
		t.Fatalf("seed %+v, want %+v", seed, want)
	}
	other := svc
	other.Provider = "hcloud"
	if _, err := st.Seed(other, "fp1"); err == nil || !strings.Contains(err.Error(), "provider") {
		t.Errorf("a set saved by another provider: %v", err)
	}
	if _, err := st.Seed(svc, "fp2"); err == nil {
		t.Error("a set saved with other filters was used")
	}
	gone := svc
	gone.Topology = "worker"
	if _, err := st.Seed(gone, "fp1"); err == nil {
		t.Error("a set of another topology was used")
	}

	// The serial saved never goes back, even if the one served did.
	serial = 4_000_000_000 - 100
	s2 := newStore(t, path, st, &serial)
	s2.Flush()
	if st2, _ := Load(path); st2.Serial != 4_000_000_000 || len(st2.Topologies["web"].Peers) != 3 {
		t.Fatalf("after a restart with a lower serial: %+v", st2)
	}
}

func TestCorruptAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"torn":    `{"version":1,"serial":3,"topologies":{"web":{"prov`,
		"garbage": "\x00\x01binary",
		"version": `{"version":99}`,
		"addr":    `{"version":1,"topologies":{"web":{"peers":[{"name":"a","addrs":["not-an-ip"]}]}}}`,
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(body), 0o600)
		if _, err := Load(path); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Load = %v, want an error with the reason", name, err)
		}
	}
}

func TestUnwritablePath(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("running as root: only the missing directory is tried")
	}
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "missing", "state.json"), dir}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o500)
		paths = append(paths, filepath.Join(ro, "state.json"))
	}
	for _, p := range paths {
		if _, err := New(Options{Path: p}); err == nil {
			t.Errorf("New(%s) accepted a path it cannot write", p)
		}
	}
}

// TestBurstsCoalesce: many changes while a write is pending make few
// writes, and the last change always reaches the file.
func TestBurstsCoalesce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	serial := uint32(1)
	s := newStore(t, path, State{}, &serial)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for i := range 200 {
		s.Publish(ctx, set("10.0.0.1", netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String()))
	}
	cancel()
	<-done
	st, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Topologies["web"].Peers[1].Addrs[0].String(); got != "10.1.0.199" {
		t.Fatalf("last saved peer %s, want the last change's 10.1.0.199", got)
	}
	if s.writes >= 200 {
		t.Errorf("%d writes for 200 changes: bursts do not coalesce", s.writes)
	}
	// An unchanged set writes nothing.
	n := s.writes
	s.Publish(context.Background(), set("10.0.0.1", "10.1.0.199"))
	select {
	case <-s.dirty:
		t.Fatal("an unchanged set asked for a write")
	default:
	}
	if s.writes != n {
		t.Fatal("unexpected write")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestLeftoverTemporaryFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	os.WriteFile(path, []byte("{}"), 0o600)
	left := filepath.Join(dir, ".state.json.tmp-123")
	os.WriteFile(left, []byte(`{"vers`), 0o600)
	serial := uint32(1)
	newStore(t, path, State{}, &serial)
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a killed write's temporary file stays: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file itself went: %v", err)
	}
}
