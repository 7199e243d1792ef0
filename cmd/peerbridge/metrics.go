package main

import (
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/peerbridge/peerbridge/bridge"
)

// What providers may offer for metrics, beyond bridge.Provider. Each is
// optional and provider-neutral: hcloud and ec2 report through the same
// methods and so the same metric families as droplet and rancher.
type (
	skipCounter interface{ Skipped() int64 }
	rateLimited interface {
		// RateLimit returns the API's budget as last reported; a negative
		// limit means none was reported yet.
		RateLimit() (limit, remaining int64)
	}
	requestCounter interface{ Requests() int64 }
	wakeupCounter  interface{ Wakeups() int64 }
)

// durationBuckets are the upper bounds, in seconds, of the poll duration
// histogram: from a static list to a 50-page listing behind a slow link.
var durationBuckets = []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

var topologyLabels = []string{"topology", "provider"}

// metrics is what /metrics serves. Polls are counted as they happen, by
// client_golang metrics the loops observe through bridge.PollObserver; they
// outlive a loop, so an HA replica's counters keep rising across its
// leadership terms. Everything else is state that the collector reads at
// scrape time: nothing on the DNS path knows about Prometheus.
type metrics struct {
	registry *prometheus.Registry
	polls    *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(st *state, topologies []topology) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerbridge_polls_total", Help: "Provider polls completed.",
		}, topologyLabels),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerbridge_poll_failures_total",
			Help: "Failed provider polls, by kind: " + failureKindsText("", ", ") + ".",
		}, slices.Concat(topologyLabels, []string{"kind"})),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "peerbridge_poll_duration_seconds", Help: "How long provider polls take.", Buckets: durationBuckets,
		}, topologyLabels),
	}
	// Every series exists from the start, at zero: a failure shows as a
	// rise, which rate() and increase() see, not as a series appearing.
	for _, t := range topologies {
		m.observer(t.name, t.provider)
	}
	m.registry.MustRegister(m.polls, m.failures, m.duration, newCollector(st),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observer returns what one topology's loop reports its polls to.
func (m *metrics) observer(topology, provider string) bridge.PollObserver {
	o := pollObserver{
		polls:    m.polls.WithLabelValues(topology, provider),
		duration: m.duration.WithLabelValues(topology, provider),
		failures: map[bridge.FailureKind]prometheus.Counter{},
	}
	for _, k := range bridge.FailureKinds() {
		o.failures[k] = m.failures.WithLabelValues(topology, provider, string(k))
	}
	return o
}

type pollObserver struct {
	polls    prometheus.Counter
	duration prometheus.Observer
	failures map[bridge.FailureKind]prometheus.Counter // read-only once built
}

func (o pollObserver) ObservePoll(took time.Duration, failure bridge.FailureKind) {
	o.polls.Inc()
	o.duration.Observe(took.Seconds())
	if failure != "" {
		o.failures[failure].Inc()
	}
}

// collector reads, at scrape time, the state the DNS server, the loops,
// the providers and the Consul publisher keep. A new family is a desc
// field, a line in newCollector and the lines in Collect that emit it.
type collector struct {
	st    *state
	descs []*prometheus.Desc // every desc below, for Describe

	buildInfo, lastSuccess, published, peers, held, interval, skipped,
	rateLimit, rateRemaining, apiRequests, wakeups,
	dnsAnswers, dnsTruncated, dnsSerial, dnsTCPConns, dnsTCPEvicted, dnsRateLimited,
	dnsTransfers, dnsNotifySent, dnsNotifyAcked, dnsNotifyFailed,
	consulWrites, consulFailures, consulLastSync, haLeader, haChanges *prometheus.Desc
	setAge, setSource *prometheus.Desc
	// Slow clients (dnsserver/tcpconns.go, xfr.go).
	dnsTCPWriteTimeouts, dnsTransfersOpen *prometheus.Desc
}

func newCollector(st *state) *collector {
	var descs []*prometheus.Desc
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		d := prometheus.NewDesc("peerbridge_"+name, help, labels, nil)
		descs = append(descs, d)
		return d
	}
	withTopology := func(labels ...string) []string { return slices.Concat(topologyLabels, labels) }
	c := &collector{
		st:             st,
		buildInfo:      desc("build_info", "peerbridge's version; always 1.", "version", "goversion"),
		lastSuccess:    desc("last_success_timestamp_seconds", "When the last complete discovery finished.", topologyLabels...),
		published:      desc("peers_published", "Peers answered in DNS (critical ones left out).", topologyLabels...),
		peers:          desc("peers", "Peers of the topology, by health: passing, critical, unknown (no health check).", withTopology("health")...),
		held:           desc("shrink_held", "1 while peers missing from the last polls wait for REMOVE_AFTER polls to confirm their removal.", topologyLabels...),
		interval:       desc("poll_interval_seconds", "The interval until the next poll: fixed, or paced by the API's budget (auto).", topologyLabels...),
		skipped:        desc("peers_skipped_total", "Peers a provider skipped, by reason.", withTopology("reason")...),
		rateLimit:      desc("provider_ratelimit_limit", "API requests the provider's token may make per rate-limit window, as the API last reported.", topologyLabels...),
		rateRemaining:  desc("provider_ratelimit_remaining", "API requests left in the current rate-limit window, as the API last reported.", topologyLabels...),
		apiRequests:    desc("provider_api_requests_total", "Requests made to the provider's API.", topologyLabels...),
		wakeups:        desc("provider_wakeups_total", "Changes the provider announced between polls (a long-poll or watch).", topologyLabels...),
		dnsAnswers:     desc("dns_answers_total", "DNS answers sent, by transport, query type and rcode.", "transport", "qtype", "rcode"),
		dnsTruncated:   desc("dns_truncated_total", "DNS answers sent with TC set.", "transport"),
		dnsSerial:      desc("dns_zone_serial", "SOA serial of the zone served."),
		dnsTCPConns:    desc("dns_tcp_connections", "DNS TCP connections open."),
		dnsTCPEvicted:  desc("dns_tcp_evicted_total", "DNS TCP connections closed to make room at PEERBRIDGE_DNS_MAX_TCP_CONNS."),
		dnsRateLimited: desc("dns_rate_limited_total", "UDP answers over PEERBRIDGE_DNS_RATE_LIMIT, by action: slip (sent truncated and empty), drop.", "action"),
		consulWrites:   desc("consul_writes_total", "Consul catalog writes, by kind: create, update, delete.", "kind"),
		consulFailures: desc("consul_sync_failures_total", "Consul syncs that failed, by kind: permission (the token lacks an ACL permission), error (anything else).", "kind"),
		consulLastSync: desc("consul_last_sync_timestamp_seconds", "When Consul was last fully in line."),
		haLeader:       desc("ha_leader", "1 while this replica leads (or runs alone), 0 while it follows."),
		haChanges:      desc("ha_role_changes_total", "Times this replica became leader or follower."),
		setAge:         desc("topology_set_age_seconds", "Seconds since the published set was last confirmed by a complete poll (of this run, or of the run that saved it).", topologyLabels...),
		setSource:      desc("topology_set_source", "1 for where the published set came from: poll, saved (the state file) or consul; 0 for the others.", withTopology("source")...),

		// Zone transfers and NOTIFY (dnsserver/xfr.go, notify.go).
		dnsTransfers:    desc("dns_transfers_total", "Zone transfer requests, by type (AXFR, IXFR) and result: full, incremental, current, refused, notauth, failed.", "type", "result"),
		dnsNotifySent:   desc("dns_notify_sent_total", "NOTIFY messages sent to secondaries, retries included."),
		dnsNotifyAcked:  desc("dns_notify_acknowledged_total", "NOTIFY messages acknowledged by secondaries."),
		dnsNotifyFailed: desc("dns_notify_failed_total", "Changes whose NOTIFY no attempt got acknowledged."),

		// Slow clients (dnsserver/tcpconns.go, xfr.go).
		dnsTCPWriteTimeouts: desc("dns_tcp_write_timeouts_total", "DNS TCP connections closed because the client did not read an answer or a transfer in time."),
		dnsTransfersOpen:    desc("dns_transfers_open", "Zone transfers under way."),
	}
	c.descs = descs
	return c
}

// Describe lists the descs rather than collecting (DescribeByCollect):
// the registry describes at registration, before there is a term to read.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.buildInfo, 1, buildVersion(), runtime.Version())
	leading := 1.0
	if c.st.role() == roleFollower {
		leading = 0
	}
	gauge(c.haLeader, leading)
	counter(c.haChanges, float64(c.st.changes.Load()))

	// Peers as DNS serves them, so that a follower, whose sets come from
	// the leader through Consul, reports them too.
	for _, set := range c.st.dns.Sets() {
		t, p := set.Service.Topology, set.Service.Provider
		gauge(c.published, float64(set.PublishedCount()), t, p)
		byHealth := map[bridge.Health]int{}
		for _, peer := range set.Peers {
			byHealth[peer.Health]++
		}
		for _, h := range []bridge.Health{bridge.HealthUnknown, bridge.HealthPassing, bridge.HealthCritical} {
			gauge(c.peers, float64(byHealth[h]), t, p, h.String())
		}
	}

	for _, l := range c.st.loops() {
		st := l.Status()
		t, p := st.Topology, st.Provider
		if !st.LastSuccess.IsZero() {
			gauge(c.lastSuccess, float64(st.LastSuccess.UnixNano())/1e9, t, p)
		}
		held := 0.0
		if st.Held {
			held = 1
		}
		gauge(c.held, held, t, p)
		gauge(c.interval, st.Interval.Seconds(), t, p)
		if st.SetSource != "" {
			gauge(c.setAge, max(time.Since(st.SetAt).Seconds(), 0), t, p)
			for _, s := range bridge.SetSources() {
				v := 0.0
				if s == st.SetSource {
					v = 1
				}
				gauge(c.setSource, v, t, p, string(s))
			}
		}

		provider := l.Provider()
		if s, ok := provider.(skipCounter); ok {
			counter(c.skipped, float64(s.Skipped()), t, p, "no_address")
		}
		if r, ok := provider.(rateLimited); ok {
			if limit, remaining := r.RateLimit(); limit >= 0 {
				gauge(c.rateLimit, float64(limit), t, p)
				gauge(c.rateRemaining, float64(remaining), t, p)
			}
		}
		if r, ok := provider.(requestCounter); ok {
			counter(c.apiRequests, float64(r.Requests()), t, p)
		}
		if w, ok := provider.(wakeupCounter); ok {
			counter(c.wakeups, float64(w.Wakeups()), t, p)
		}
	}

	dns := c.st.dns.Stats()
	for _, q := range dns.Queries {
		counter(c.dnsAnswers, float64(q.Count), q.Transport, q.Type, q.Rcode)
	}
	counter(c.dnsTruncated, float64(dns.TruncatedUDP), "udp")
	counter(c.dnsTruncated, float64(dns.TruncatedTCP), "tcp")
	gauge(c.dnsSerial, float64(c.st.dns.Snapshot().Serial()))
	for _, x := range dns.Transfers {
		counter(c.dnsTransfers, float64(x.Count), x.Type, x.Result)
	}
	counter(c.dnsNotifySent, float64(dns.NotifiesSent))
	counter(c.dnsNotifyAcked, float64(dns.NotifiesAcked))
	counter(c.dnsNotifyFailed, float64(dns.NotifiesFailed))
	gauge(c.dnsTCPConns, float64(dns.TCPConnsOpen))
	counter(c.dnsTCPEvicted, float64(dns.TCPConnsEvicted))
	counter(c.dnsRateLimited, float64(dns.RateLimitSlipped), "slip")
	counter(c.dnsRateLimited, float64(dns.RateLimitDropped), "drop")
	counter(c.dnsTCPWriteTimeouts, float64(dns.TCPWriteTimeouts))
	gauge(c.dnsTransfersOpen, float64(dns.TransfersOpen))

	if consul := c.st.consul(); consul != nil {
		s := consul.Stats()
		counter(c.consulWrites, float64(s.Creates), "create")
		counter(c.consulWrites, float64(s.Updates), "update")
		counter(c.consulWrites, float64(s.Deletes), "delete")
		counter(c.consulFailures, float64(s.Denied), "permission")
		counter(c.consulFailures, float64(s.Failures-s.Denied), "error")
		if !s.LastSync.IsZero() {
			gauge(c.consulLastSync, float64(s.LastSync.UnixNano())/float64(time.Second))
		}
	}
}

// failureKindsText lists every bridge.FailureKind, each quoted with q,
// for the metric's help and METRICS.md.
func failureKindsText(q, sep string) string {
	kinds := bridge.FailureKinds()
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = q + string(k) + q
	}
	return strings.Join(out, sep)
}
