package droplet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// metadataTimeout is short: off a droplet the address does not answer at
// all, and a poll must not wait for it.
const metadataTimeout = time.Second

// selfLookup finds the droplet peerbridge runs on, through the metadata
// service, once it answers.
type selfLookup struct {
	base   string
	client *http.Client
	log    *slog.Logger

	mu     sync.Mutex
	known  int
	warned bool
}

func newSelfLookup(base string, client *http.Client, log *slog.Logger) *selfLookup {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return &selfLookup{base: base, client: &http.Client{Transport: transport(client)}, log: log}
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
	idText, err := s.get(ctx, "id")
	var id int
	if err == nil {
		id, err = strconv.Atoi(idText)
	}
	if err != nil || id <= 0 {
		if !s.warned {
			s.log.Warn("own droplet unknown, not excluding it: the metadata service did not answer", "error", err)
			s.warned = true
		}
		return 0
	}
	region, _ := s.get(ctx, "region")
	s.log.Info("running on a droplet, excluding it from the peers", "droplet_id", id, "region", region)
	s.known = id
	return id
}

func (s *selfLookup) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("metadata %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", fmt.Errorf("metadata %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metadata %s: %s", path, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}
