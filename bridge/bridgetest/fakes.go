package bridgetest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
)

// Buffer is a bytes.Buffer that several goroutines may write to while a
// test reads it: a log sink.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Recorder is a bridge.Publisher that keeps the last set published.
type Recorder struct {
	mu   sync.Mutex
	last bridge.Set
}

// Publish records s.
func (r *Recorder) Publish(_ context.Context, s bridge.Set) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = s
	return nil
}

// Peers is the number of peers in the last set published.
func (r *Recorder) Peers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.last.Peers)
}

// Summary renders peers as sorted "name=addr,addr" lines, for comparing
// what a provider returned with what a test expects.
func Summary(peers []bridge.Peer) []string {
	var out []string
	for _, p := range peers {
		addrs := make([]string, len(p.Addrs))
		for i, a := range p.Addrs {
			addrs[i] = a.String()
		}
		out = append(out, p.Name+"="+strings.Join(addrs, ","))
	}
	slices.Sort(out)
	return out
}

// Polls is a bridge.PollObserver that counts failed polls by kind.
type Polls struct {
	mu       sync.Mutex
	failures map[bridge.FailureKind]int
}

// ObservePoll counts a failed poll.
func (p *Polls) ObservePoll(_ time.Duration, kind bridge.FailureKind) {
	if kind == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failures == nil {
		p.failures = map[bridge.FailureKind]int{}
	}
	p.failures[kind]++
}

// Failures returns the failed polls of kind so far.
func (p *Polls) Failures(kind bridge.FailureKind) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures[kind]
}

// NewLoop returns the loop of a topology "web" polling p every minute
// (a test calls Poll itself), publishing to the returned Recorder and
// reporting its polls to the returned Polls.
func NewLoop(provider string, p bridge.Provider) (*bridge.Loop, *Recorder, *Polls) {
	rec, polls := &Recorder{}, &Polls{}
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: provider},
		Interval: time.Minute, Provider: p, Publishers: []bridge.Publisher{rec}, Observer: polls,
	})
	return loop, rec, polls
}
