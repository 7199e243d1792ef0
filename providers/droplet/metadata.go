package droplet

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// metadataTimeout is short: off a droplet the address does not answer at
// all, and a poll must not wait for it.
const metadataTimeout = time.Second

// maxMetadata bounds the metadata answer, which carries user data (at most
// 64 KiB) besides the few fields read here.
const maxMetadata = 1 << 20

// selfLookup finds the droplet peerbridge runs on, through the metadata
// service, once it answers.
type selfLookup struct {
	url    string // the whole tree as one JSON object: <base>.json
	client *http.Client
	log    *slog.Logger

	mu     sync.Mutex
	known  int
	warned bool
}

func newSelfLookup(base string, client *http.Client, log *slog.Logger) *selfLookup {
	// .../metadata/v1/ -> .../metadata/v1.json, as DigitalOcean serves it.
	return &selfLookup{url: strings.TrimRight(base, "/") + ".json", client: &http.Client{Transport: transport(client), CheckRedirect: client.CheckRedirect}, log: log}
}

// id returns the own droplet's id, or 0 when the metadata service does
// not answer (not on a droplet); then nothing is excluded, and it asks
// again on the next poll.
func (s *selfLookup) id(ctx context.Context) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known != 0 {
		return s.known
	}
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	var meta struct {
		ID     int    `json:"droplet_id"`
		Region string `json:"region"`
	}
	err := platform.GetJSON(ctx, s.client, platform.Rules{}, s.url, nil, maxMetadata, &meta)
	if err != nil || meta.ID <= 0 {
		if !s.warned {
			s.log.Warn("own droplet unknown, not excluding it: the metadata service did not answer", "url", s.url, "error", err)
			s.warned = true
		}
		return 0
	}
	s.log.Info("running on a droplet, excluding it from the peers", "droplet_id", meta.ID, "region", meta.Region)
	s.known = meta.ID
	return meta.ID
}
