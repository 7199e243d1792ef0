package dnsserver

import (
	"log/slog"
	"sync"
	"time"
)

// Lines a client can cause (a bad TSIG, a refused transfer) are limited:
// anyone can send them, and 100,000 spoofed bad-TSIG packets once wrote
// 21,283 warnings. Each kind of line is logged at most logBurst times per
// logWindow; what is left out is counted, and one line says how many once
// the window is over.
const (
	logBurst  = 5
	logWindow = time.Second
)

// rateLog logs a few lines of each kind per window and counts the rest.
type rateLog struct {
	log *slog.Logger

	mu    sync.Mutex
	kinds map[string]*logKind
}

// logKind is one message's window.
type logKind struct {
	start      time.Time
	logged     int
	suppressed int
	lastRemote string // of the last line left out, for the summary
	flushing   bool   // a summary is due at the window's end
}

func newRateLog(log *slog.Logger) *rateLog {
	return &rateLog{log: log, kinds: map[string]*logKind{}}
}

// warn logs msg, a line caused by the client at remote, unless logBurst
// lines of msg were logged in this window already; then it counts it, and
// a summary line at the window's end says how many were left out.
func (r *rateLog) warn(msg, remote string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	k := r.kinds[msg]
	if k == nil {
		k = &logKind{}
		r.kinds[msg] = k
	}
	if now.Sub(k.start) >= logWindow {
		k.start, k.logged = now, 0
	}
	if k.logged < logBurst {
		k.logged++
		r.mu.Unlock()
		r.log.Warn(msg, append([]any{"remote", remote}, args...)...)
		return
	}
	k.suppressed++
	k.lastRemote = remote
	if !k.flushing {
		k.flushing = true
		time.AfterFunc(k.start.Add(logWindow).Sub(now), func() { r.summary(msg) })
	}
	r.mu.Unlock()
}

// summary logs how many lines of msg were left out since the last one.
func (r *rateLog) summary(msg string) {
	r.mu.Lock()
	k := r.kinds[msg]
	n, remote := k.suppressed, k.lastRemote
	k.suppressed, k.flushing = 0, false
	r.mu.Unlock()
	if n > 0 {
		r.log.Warn(msg+" (more lines left out)", "suppressed", n, "last_remote", remote,
			"limit", slog.GroupValue(slog.Int("lines", logBurst), slog.Duration("per", logWindow)))
	}
}
