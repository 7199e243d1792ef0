package main

import (
	"strings"
	"testing"
	"time"
)

// TestAutoPollInterval runs a droplet topology with
// PEERBRIDGE_POLL_INTERVAL=auto against an API that reports its rate
// limit as DigitalOcean's does: the interval follows the budget the
// headers leave, and slows down when another user of the token takes
// most of it. (bridge's budget tests check the share spent over hours of
// simulated time; this one checks the wiring.)
func TestAutoPollInterval(t *testing.T) {
	do := startFakeDigitalOcean(t)
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":         "db",
		"PEERBRIDGE_PROVIDER":        "droplet",
		"PEERBRIDGE_DROPLET_API_URL": do.URL,
		"PEERBRIDGE_POLL_INTERVAL":   "auto",
		"PEERBRIDGE_API_BUDGET":      "0.5",
		"PEERBRIDGE_DNS_ADDR":        "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":       "127.0.0.1:0",
		"DIGITALOCEAN_TOKEN":         fakeDOToken,
	})
	run := startMain(t)
	const series = `peerbridge_poll_interval_seconds{provider="droplet",topology="db"}`
	interval := func(want func(float64) bool) float64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, ok := sampleValue(get(t, "http://"+run.http+"/metrics"), series)
			if ok && want(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v, never as expected", series, v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The limit is 5,000 an hour and 4,321 remain, the bridge's own
	// requests among the 679 used: half of what the others leave is about
	// 2,160 an hour, one page a poll, so a poll every 1.67s.
	paced := interval(func(v float64) bool { return v < 10 })
	if paced < 1.6 || paced > 1.7 {
		t.Errorf("interval %.3fs, want about 1.67s (half of what others leave of 5,000 an hour)", paced)
	}
	// Another user now takes all but 100: the bridge slows to a third or
	// less of its pace.
	do.leave(100)
	slowed := interval(func(v float64) bool { return v > paced })
	t.Logf("auto interval %.2fs alone, %.2fs when another user leaves 100 of 5,000 (%d requests served)", paced, slowed, do.served())
	if slowed < 3*paced {
		t.Errorf("interval %.2fs with little left, want at least three times %.2fs", slowed, paced)
	}
	if !strings.Contains(run.logs.String(), "auto (50% of the API budget)") {
		t.Errorf("the start-up log does not show the auto interval:\n%s", run.logs)
	}
}

func TestAutoPollIntervalNeedsAMeteredProvider(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_STATIC_PEERS": "a=10.0.0.1", "PEERBRIDGE_POLL_INTERVAL": "auto"},
			"PEERBRIDGE_POLL_INTERVAL: auto needs a provider whose API reports its rate limit (droplet or hcloud), not static"},
		{map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PROVIDER": "droplet", "DIGITALOCEAN_TOKEN": fakeDOToken,
			"PEERBRIDGE_POLL_INTERVAL": "auto", "PEERBRIDGE_API_BUDGET": "1.5"},
			"PEERBRIDGE_API_BUDGET: budget share 1.5 must be above 0 and at most 1"},
		{map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_STATIC_PEERS": "a=10.0.0.1", "PEERBRIDGE_POLL_INTERVAL": "often"},
			`PEERBRIDGE_POLL_INTERVAL: "often" is neither a duration such as 10s or 1m30s nor auto`},
	} {
		setEnv(t, tc.env)
		_, err := loadConfig()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadConfig() = %v, want a line %q", err, tc.want)
		}
	}
}
