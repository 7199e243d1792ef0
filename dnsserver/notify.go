package dnsserver

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// NOTIFY (RFC 1996) tells the secondaries of each new serial, so that they
// transfer it at once instead of at their next refresh. Each target has
// its own goroutine and socket (miekg/dns's client), which reads the
// answers itself: the server never sees, let alone answers, them.

const (
	// notifyAttempts is how often a NOTIFY is sent before giving up until
	// the next change; the secondary's refresh timer remains.
	notifyAttempts = 5
	// notifyTimeout is how long one attempt waits for the answer; the
	// wait doubles with each attempt.
	notifyTimeout = time.Second
)

// notifyLoop sends the NOTIFYs until ctx is done: one at start, then one
// for each change.
func (s *Server) notifyLoop(ctx context.Context) error {
	done := make(chan struct{})
	for i, target := range s.xfr.cfg.Notify {
		go func() {
			defer func() { done <- struct{}{} }()
			s.notifyTarget(ctx, target, s.xfr.kicks[i])
		}()
	}
	s.xfr.kick()
	for range s.xfr.cfg.Notify {
		<-done
	}
	return nil
}

// notifyTarget sends target a NOTIFY for each change kicked, retrying with
// backoff until it is acknowledged: a response with the query's ID, QR
// set and opcode NOTIFY. A change while retrying restarts the retries with
// the new serial.
func (s *Server) notifyTarget(ctx context.Context, target string, kick <-chan struct{}) {
	client := &dns.Client{Net: "udp", TsigSecret: s.xfr.secret}
	pending := false // a change came while retrying the previous one
	for {
		if !pending {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
		}
		pending = false
		for attempt := range notifyAttempts {
			serial := s.snap.Load().serial
			timeout := notifyTimeout << attempt
			start := time.Now()
			if s.notify(ctx, client, target, serial, timeout) {
				break
			}
			if attempt == notifyAttempts-1 {
				s.xfr.notifyFailed.Add(1)
				s.log.Warn("dns NOTIFY not acknowledged; the secondary will find the change at its next refresh",
					"target", target, "serial", serial, "attempts", notifyAttempts)
				break
			}
			// Wait out the rest of the timeout, so that a target that
			// refuses at once is not flooded.
			select {
			case <-ctx.Done():
				return
			case <-kick:
				pending = true // a newer serial: start again with it
			case <-time.After(timeout - time.Since(start)):
			}
			if pending {
				break
			}
		}
	}
}

// notify sends one NOTIFY for serial and reports whether it was answered;
// an answer other than NOERROR is logged and counts as done, as sending it
// again would not change it.
func (s *Server) notify(ctx context.Context, client *dns.Client, target string, serial uint32, timeout time.Duration) bool {
	snap := s.snap.Load()
	m := new(dns.Msg).SetNotify(snap.zone)
	// RFC 1996 3.7: the new SOA, which secondaries may use as a hint.
	soa := *snap.soa()
	soa.Serial = serial
	m.Answer = []dns.RR{&soa}
	if key := s.xfr.cfg.Key; key != nil {
		m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s.xfr.notifySent.Add(1)
	r, _, err := client.ExchangeContext(actx, m, target)
	switch {
	case err != nil:
		s.log.Debug("dns NOTIFY not answered", "target", target, "serial", serial, "error", err)
		return false
	case r.Id != m.Id || !r.Response || r.Opcode != dns.OpcodeNotify:
		s.log.Debug("dns NOTIFY answered with something else", "target", target, "serial", serial)
		return false
	case r.Rcode != dns.RcodeSuccess:
		s.log.Warn("dns NOTIFY rejected", "target", target, "serial", serial, "rcode", dns.RcodeToString[r.Rcode])
		return true
	}
	s.xfr.notifyAcked.Add(1)
	s.log.Debug("dns NOTIFY acknowledged", "target", target, "serial", serial)
	return true
}

// notifyCounts returns the NOTIFY messages sent (each attempt), those
// acknowledged, and the changes given up on after every attempt failed.
func (s *Server) notifyCounts() (sent, acked, failed uint64) {
	return s.xfr.notifySent.Load(), s.xfr.notifyAcked.Load(), s.xfr.notifyFailed.Load()
}
