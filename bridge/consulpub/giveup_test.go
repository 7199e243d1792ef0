package consulpub

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// TestRefusedWritesEndRun: a publisher whose token may not write stops
// after MaxRefusals refused syncs in a row, with ErrRefused, so that a
// leader can give up its lock; without MaxRefusals it retries for ever.
func TestRefusedWritesEndRun(t *testing.T) {
	const root = "7d1e8a3e-5a1f-4c2e-9d4b-0123456789ab"
	agent := bridgetest.StartConsul(t, fmt.Sprintf(
		`acl { enabled = true, default_policy = "deny", tokens { initial_management = %q, agent = %q } }`, root, root))
	p, err := New(Options{Client: client(t, agent.Addr, "", nil), Owner: "pb", MaxRefusals: 2})
	if err != nil {
		t.Fatal(err)
	}
	p.Publish(context.Background(), set("refused", peer("a", "10.0.9.1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, ErrRefused) {
		t.Fatalf("Run = %v, want ErrRefused", err)
	}
	if !permissionDenied(fmt.Errorf("txn: %w", errors.New("Permission denied: token lacks node:write"))) || permissionDenied(errors.New("connection refused")) {
		t.Fatal("permissionDenied misreads an error")
	}
}

// TestLeaderThatGivesUpLetsAnotherLead: a replica whose leader returns on
// its own (it cannot build its provider) releases the lock, and another
// replica leads.
func TestLeaderThatGivesUpLetsAnotherLead(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	c := client(t, agent.Addr, "", nil)
	opts := ElectionOptions{Client: c, Key: "peerbridge/leader/giveup", CheckTTL: time.Second, LockDelay: time.Second, RenewDeadline: 500 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var broken atomic.Int64
	aDone := make(chan error, 1)
	go func() {
		aDone <- Lead(ctx, opts, func(context.Context, Fence) { broken.Add(1) }, nil)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for broken.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the broken replica never won the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	leading := make(chan struct{}, 1)
	bDone := make(chan error, 1)
	go func() {
		bDone <- Lead(ctx, opts, func(ctx context.Context, _ Fence) {
			select {
			case leading <- struct{}{}:
			default:
			}
			<-ctx.Done()
		}, nil)
	}()
	select {
	case <-leading:
	case <-time.After(20 * time.Second):
		t.Fatalf("the working replica did not lead; the broken one tried %d times", broken.Load())
	}
	cancel()
	<-aDone
	<-bDone
}
