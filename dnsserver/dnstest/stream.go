package dnstest

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Stream is a steady stream of queries, as resolvers send them: each query
// is retried on a timeout or an error (a refused port, a reset
// connection) until it has an answer or Deadline has passed, when it
// counts as lost. Tests run it across restarts of the server.
type Stream struct {
	stop chan struct{}
	wg   sync.WaitGroup

	sent, answered, lost, refused, retries, bad atomic.Int64
	maxLatency                                  atomic.Int64
	lastErr                                     atomic.Value // string
}

// StreamResult is what a stream saw.
type StreamResult struct {
	// Sent is how many queries were asked (retries not counted), Answered
	// how many had an answer with records, Lost how many had none within
	// the deadline.
	Sent, Answered, Lost int64
	// Refused counts attempts that met a refused port or a reset
	// connection; Retries every attempt after the first; Bad answers
	// without the records asked for (also counted lost).
	Refused, Retries, Bad int64
	// MaxLatency is the longest time from a query's first attempt to its
	// answer.
	MaxLatency time.Duration
	// LastError is the last attempt's error, for a failure message.
	LastError string
}

// Stream timing: an attempt waits AttemptTimeout, a query is lost after
// Deadline, a worker pauses Pace between queries.
const (
	AttemptTimeout = 300 * time.Millisecond
	Deadline       = 2 * time.Second
	Pace           = 5 * time.Millisecond
)

// StartStream asks addr for name's qtype records from udp workers over UDP
// and tcp workers over TCP (a new connection per query, as a resolver's
// fallback does) until Stop.
func StartStream(addr, name string, qtype uint16, udp, tcp int) *Stream {
	s := &Stream{stop: make(chan struct{})}
	for i := range udp + tcp {
		network := "udp"
		if i >= udp {
			network = "tcp"
		}
		s.wg.Add(1)
		go s.worker(addr, network, name, qtype)
	}
	return s
}

func (s *Stream) worker(addr, network, name string, qtype uint16) {
	defer s.wg.Done()
	c := &dns.Client{Net: network, Timeout: AttemptTimeout}
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(Pace):
		}
		s.sent.Add(1)
		start := time.Now()
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				s.retries.Add(1)
			}
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), addr)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				s.answered.Add(1)
				for d := int64(time.Since(start)); ; {
					m := s.maxLatency.Load()
					if d <= m || s.maxLatency.CompareAndSwap(m, d) {
						break
					}
				}
				break
			}
			if err == nil {
				s.bad.Add(1)
				err = errors.New("answer without records: " + dns.RcodeToString[r.Rcode])
			}
			s.lastErr.Store(err.Error())
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
				s.refused.Add(1)
				time.Sleep(10 * time.Millisecond) // as a resolver tries its next server
			}
			if time.Since(start) > Deadline {
				s.lost.Add(1)
				break
			}
		}
	}
}

// Stop ends the stream, waits for the queries under way and returns what
// it saw.
func (s *Stream) Stop() StreamResult {
	close(s.stop)
	s.wg.Wait()
	last, _ := s.lastErr.Load().(string)
	return StreamResult{
		Sent: s.sent.Load(), Answered: s.answered.Load(), Lost: s.lost.Load(),
		Refused: s.refused.Load(), Retries: s.retries.Load(), Bad: s.bad.Load(),
		MaxLatency: time.Duration(s.maxLatency.Load()), LastError: last,
	}
}

// Answered returns how many queries have had an answer so far.
func (s *Stream) Answered() int64 { return s.answered.Load() }
