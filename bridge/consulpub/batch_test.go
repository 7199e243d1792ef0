package consulpub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// writeProxy is a reverse proxy on loopback in front of Consul that counts
// the write requests (anything but GET) and the operations of each
// transaction.
type writeProxy struct {
	addr string

	mu     sync.Mutex
	writes int
	txnOps []int            // operations of each PUT /v1/txn
	hook   func(api.TxnOps) // run once, before the next transaction is forwarded
}

func startProxy(t *testing.T, consulAddr string) *writeProxy {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: consulAddr})
	rp.ErrorLog = log.New(io.Discard, "", 0) // Consul stopped on purpose: 502s are expected
	wp := &writeProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var ops api.TxnOps
			isTxn := r.URL.Path == "/v1/txn"
			if isTxn {
				if err := json.Unmarshal(body, &ops); err != nil {
					t.Errorf("proxy: a transaction that is not JSON ops: %v", err)
				}
			}
			wp.mu.Lock()
			wp.writes++
			var hook func(api.TxnOps)
			if isTxn {
				wp.txnOps = append(wp.txnOps, len(ops))
				hook, wp.hook = wp.hook, nil
			}
			wp.mu.Unlock()
			if hook != nil {
				hook(ops)
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	wp.addr = strings.TrimPrefix(srv.URL, "http://")
	return wp
}

// reset returns the writes and transactions' ops counted so far and
// starts counting again.
func (wp *writeProxy) reset() (writes int, txnOps []int) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	writes, txnOps = wp.writes, wp.txnOps
	wp.writes, wp.txnOps = 0, nil
	return writes, txnOps
}

func (wp *writeProxy) beforeNextTxn(hook func(api.TxnOps)) {
	wp.mu.Lock()
	wp.hook = hook
	wp.mu.Unlock()
}

// fleet is n peers with a health verdict: each takes the most operations
// to register (node, service, check).
func fleet(service string, n int) bridge.Set {
	peers := make([]bridge.Peer, n)
	for i := range peers {
		peers[i] = peer(fmt.Sprintf("p%05d", i), fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256))
		peers[i].Attrs = map[string]string{"region": "nyc3", "size": "s-1vcpu-1gb"}
		peers[i].Health = bridge.HealthPassing
	}
	return set(service, peers...)
}

// TestBatchedWrites counts, behind a proxy, the write requests a fenced
// publisher sends to a real Consul for a fill, a scale-up, steady polls,
// drift and a Consul restarted empty.
func TestBatchedWrites(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	proxy := startProxy(t, agent.Addr)
	direct := client(t, agent.Addr, "", nil)
	c := client(t, proxy.addr, "", nil)
	ctx := context.Background()

	p, err := New(Options{Client: c, Owner: "pb", Fence: lock(t, direct, "peerbridge/leader/pb")})
	if err != nil {
		t.Fatal(err)
	}
	perWrite := func(t *testing.T, what string, peers int, minPerWrite float64) {
		t.Helper()
		writes, txns := proxy.reset()
		if writes == 0 {
			t.Fatalf("%s: no write", what)
		}
		per := float64(peers) / float64(writes)
		t.Logf("%s: %d peers in %d write requests (%d transactions, ops each %v): %.1f peers per write",
			what, peers, writes, len(txns), txns, per)
		if per < minPerWrite {
			t.Errorf("%s: %.1f peers per write, want >= %v", what, per, minPerWrite)
		}
		for _, n := range txns {
			if n > maxTxnOps {
				t.Errorf("%s: a transaction of %d ops, over Consul's %d", what, n, maxTxnOps)
			}
		}
	}

	proxy.reset()
	start := time.Now()
	publish(t, p, fleet("fleet", 2400))
	took := time.Since(start)
	t.Logf("fill of 2,400 peers: %v", took)
	if took > 60*time.Second {
		t.Errorf("fill of 2,400 peers took %v", took)
	}
	perWrite(t, "fill", 2400, 20)
	if n := len(nodes(t, direct, "fleet")); n != 2400 {
		t.Fatalf("%d nodes after the fill, want 2400", n)
	}

	publish(t, p, fleet("fleet", 2700))
	perWrite(t, "scale-up", 300, 20)
	if n := len(nodes(t, direct, "fleet")); n != 2700 {
		t.Fatalf("%d nodes after the scale-up, want 2700", n)
	}

	for range 3 {
		publish(t, p, fleet("fleet", 2700))
	}
	if writes, _ := proxy.reset(); writes != 0 {
		t.Errorf("%d writes over 3 steady polls, want 0", writes)
	}

	if _, err := direct.Catalog().Deregister(&api.CatalogDeregistration{Node: "pb-fleet-p00042"}, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, p, fleet("fleet", 2700))
	if writes, _ := proxy.reset(); writes != 1 {
		t.Errorf("%d writes to repair one entry, want 1", writes)
	}
	if n := len(nodes(t, direct, "fleet")); n != 2700 {
		t.Errorf("%d nodes after the repair, want 2700", n)
	}

	// Consul restarted empty: the fence's session is gone with the rest,
	// so writes are refused as fenced, and a new leader (here: a new
	// session) refills the catalog.
	agent.Stop()
	agent.Restart()
	p.Publish(ctx, fleet("fleet", 2700))
	if err := p.Sync(ctx); !errors.Is(err, errFenced) {
		t.Fatalf("Sync after Consul lost the session = %v, want errFenced", err)
	}
	if n := len(nodes(t, direct, "fleet")); n != 0 {
		t.Fatalf("%d nodes written without the lock", n)
	}
	proxy.reset()
	p2, err := New(Options{Client: c, Owner: "pb", Fence: lock(t, direct, "peerbridge/leader/pb")})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, p2, fleet("fleet", 2700))
	perWrite(t, "refill after a restart", 2700, 20)
	if n := len(nodes(t, direct, "fleet")); n != 2700 {
		t.Fatalf("%d nodes after the refill, want 2700", n)
	}
}

// TestFailedTransactionSplit makes one entry of a batch fail in Consul
// between the read and the write: every other entry is written, the
// failure names the node, and the next sync repairs what can be.
func TestFailedTransactionSplit(t *testing.T) {
	agent := bridgetest.StartConsul(t, "")
	proxy := startProxy(t, agent.Addr)
	direct := client(t, agent.Addr, "", nil)
	c := client(t, proxy.addr, "", nil)
	ctx := context.Background()

	t.Run("a name taken by another owner", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := fleet("taken", 100)
		proxy.beforeNextTxn(func(api.TxnOps) {
			reg := &api.CatalogRegistration{Node: "pb-taken-p00050", Address: "192.0.2.50",
				NodeMeta: map[string]string{"team": "ops"}, Service: &api.AgentService{ID: "other", Service: "other"}}
			if _, err := direct.Catalog().Register(reg, nil); err != nil {
				t.Error(err)
			}
		})
		p.Publish(ctx, s)
		err := p.Sync(ctx)
		if err == nil || !strings.Contains(err.Error(), "node pb-taken-p00050 not written") {
			t.Fatalf("Sync = %v, want pb-taken-p00050 reported", err)
		}
		if strings.Count(err.Error(), "not written") != 1 {
			t.Errorf("more than one entry reported: %v", err)
		}
		got := nodes(t, direct, "taken")
		if len(got) != 99 || got["pb-taken-p00050"] != nil {
			t.Errorf("%d nodes written, want the 99 others", len(got))
		}
		if other := nodes(t, direct, "other")["pb-taken-p00050"]; other == nil || other.Address != "192.0.2.50" {
			t.Errorf("the foreign node was changed: %+v", other)
		}
		_, txns := proxy.reset()
		t.Logf("a 100-peer fill with one name taken: %d transactions, ops each %v", len(txns), txns)
	})

	t.Run("a node changed since the read", func(t *testing.T) {
		p := newPublisher(t, c, "pb")
		s := fleet("moved", 100)
		publish(t, p, s)
		s.Service.Port = 5000 // every entry to update
		proxy.beforeNextTxn(func(api.TxnOps) {
			// An edit by hand of one node: its ModifyIndex moves.
			reg := Desired("pb", nil, s)["pb-moved-p00007"]
			reg.NodeMeta = map[string]string{metaOwner: "pb", metaExternal: "true", metaProbe: "true", "edited": "by hand"}
			reg.Service.Port = 4369
			reg.Checks = nil
			if _, err := direct.Catalog().Register(reg, nil); err != nil {
				t.Error(err)
			}
		})
		p.Publish(ctx, s)
		err := p.Sync(ctx)
		if err == nil || !strings.Contains(err.Error(), "node pb-moved-p00007 not written") || strings.Count(err.Error(), "not written") != 1 {
			t.Fatalf("Sync = %v, want pb-moved-p00007 alone reported", err)
		}
		for name, e := range nodes(t, direct, "moved") {
			if edited := name == "pb-moved-p00007"; (e.ServicePort == 5000) == edited {
				t.Errorf("%s: port %d", name, e.ServicePort)
			}
		}
		// The next sync reads the edit and writes over it.
		proxy.reset()
		if err := p.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if writes, _ := proxy.reset(); writes != 1 {
			t.Errorf("%d writes to repair, want 1", writes)
		}
		if e := nodes(t, direct, "moved")["pb-moved-p00007"]; e.ServicePort != 5000 || e.NodeMeta["edited"] != "" {
			t.Errorf("not repaired: %+v", e)
		}
	})

	t.Run("a lost fence stops at once", func(t *testing.T) {
		fence := lock(t, direct, "peerbridge/leader/split")
		fenced, err := New(Options{Client: c, Owner: "pb", Fence: fence})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Session().Destroy(fence.Session, nil); err != nil {
			t.Fatal(err)
		}
		proxy.reset()
		fenced.Publish(ctx, fleet("fenced", 100))
		if err := fenced.Sync(ctx); !errors.Is(err, errFenced) {
			t.Fatalf("Sync = %v, want errFenced", err)
		}
		if writes, _ := proxy.reset(); writes != 1 {
			t.Errorf("%d write requests, want 1: a fence failure is not split", writes)
		}
		if n := len(nodes(t, direct, "fenced")); n != 0 {
			t.Errorf("%d nodes written without the lock", n)
		}
	})

	t.Run("Consul down stops at once", func(t *testing.T) {
		agent.Stop()
		defer agent.Restart()
		p := newPublisher(t, c, "pb")
		proxy.reset()
		// Straight to the write path (the read would fail first): the
		// proxy answers 502, as a load balancer does with Consul gone.
		err := p.apply(ctx, plan("pb", Desired("pb", nil, fleet("down", 100)), nil), nil)
		if err == nil || strings.Contains(err.Error(), "not written") {
			t.Fatalf("apply = %v, want one transport error", err)
		}
		if writes, _ := proxy.reset(); writes != 1 {
			t.Errorf("%d write requests with Consul down, want 1", writes)
		}
	})
}
