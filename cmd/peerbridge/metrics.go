package main

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/peerbridge/peerbridge/bridge"
)

// What providers may offer for metrics, beyond bridge.Provider.
type (
	skipCounter interface{ Skipped() int64 }
	rateLimited interface {
		RateLimit() (limit, remaining int64)
	}
	requestCounter interface{ Requests() int64 }
	wakeupCounter  interface{ Wakeups() int64 }
)

// collector reads the counters the loops, providers and publishers keep,
// at scrape time: nothing on the DNS path or in the loops knows about
// Prometheus.
type collector struct {
	st *state

	buildInfo, polls, failures, lastSuccess, published, held, skipped, duration,
	rateLimit, rateRemaining, wakeups,
	dnsAnswers, dnsTruncated, dnsSerial,
	consulWrites, consulFailures, consulLastSync, haLeader, haChanges *prometheus.Desc
	// apiRequests counts a platform's API requests, by provider.
	apiRequests map[string]*prometheus.Desc
}

var topologyLabels = []string{"topology", "provider"}

func newRegistry(st *state) *prometheus.Registry {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("peerbridge_"+name, help, labels, nil)
	}
	c := &collector{
		st:            st,
		buildInfo:     desc("build_info", "peerbridge's version; always 1.", "version", "goversion"),
		polls:         desc("polls_total", "Provider polls completed.", topologyLabels...),
		failures:      desc("poll_failures_total", "Failed provider polls, by kind: rate_limited, timeout, transient, error.", append(topologyLabels, "kind")...),
		lastSuccess:   desc("last_success_timestamp_seconds", "When the last complete discovery finished.", topologyLabels...),
		published:     desc("peers_published", "Peers answered in DNS (critical ones left out).", topologyLabels...),
		held:          desc("shrink_held", "1 while a sharply shrunken set waits for a second poll.", topologyLabels...),
		skipped:       desc("peers_skipped_total", "Peers a provider skipped, by reason.", append(topologyLabels, "reason")...),
		duration:      desc("poll_duration_seconds", "How long provider polls take.", topologyLabels...),
		rateLimit:     desc("droplet_ratelimit_limit", "DigitalOcean API requests allowed per hour, as last reported.", "topology"),
		rateRemaining: desc("droplet_ratelimit_remaining", "DigitalOcean API requests left this hour, as last reported.", "topology"),
		apiRequests: map[string]*prometheus.Desc{
			"droplet": desc("droplet_api_requests_total", "DigitalOcean API requests made.", "topology"),
			"ec2":     desc("ec2_api_requests_total", "AWS EC2 API requests made (one per DescribeInstances page).", "topology"),
		},
		wakeups:        desc("rancher_longpoll_wakeups_total", "Rancher metadata changes seen by the long-poll.", "topology"),
		dnsAnswers:     desc("dns_answers_total", "DNS answers sent, by transport, query type and rcode.", "transport", "qtype", "rcode"),
		dnsTruncated:   desc("dns_truncated_total", "DNS answers sent with TC set.", "transport"),
		dnsSerial:      desc("dns_zone_serial", "SOA serial of the zone served."),
		consulWrites:   desc("consul_writes_total", "Consul catalog writes, by kind: create, update, delete.", "kind"),
		consulFailures: desc("consul_sync_failures_total", "Consul syncs that failed."),
		consulLastSync: desc("consul_last_sync_timestamp_seconds", "When Consul was last fully in line."),
		haLeader:       desc("ha_leader", "1 while this replica leads (or runs alone), 0 while it follows."),
		haChanges:      desc("ha_role_changes_total", "Times this replica became leader or follower."),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
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
	if c.st.role() == "follower" {
		leading = 0
	}
	gauge(c.haLeader, leading)
	counter(c.haChanges, float64(c.st.changes.Load()))

	for _, l := range c.st.loops() {
		st := l.Status()
		t, p := st.Topology, st.Provider
		counter(c.polls, float64(st.Polls), t, p)
		for _, kind := range []string{"rate_limited", "timeout", "transient", "error"} {
			counter(c.failures, float64(st.FailuresByKind[kind]), t, p, kind)
		}
		if !st.LastSuccess.IsZero() {
			gauge(c.lastSuccess, float64(st.LastSuccess.UnixNano())/1e9, t, p)
		}
		gauge(c.published, float64(bridge.Set{Peers: st.Peers}.PublishedCount()), t, p)
		held := 0.0
		if st.Held {
			held = 1
		}
		gauge(c.held, held, t, p)
		buckets := make(map[float64]uint64, len(bridge.DurationBuckets))
		var cumulative uint64
		for i, le := range bridge.DurationBuckets {
			cumulative += st.Durations.Counts[i]
			buckets[le] = cumulative
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, st.Durations.Count, st.Durations.Sum.Seconds(), buckets, t, p)

		provider := l.Provider()
		if s, ok := provider.(skipCounter); ok {
			counter(c.skipped, float64(s.Skipped()), t, p, "no_address")
		}
		if r, ok := provider.(rateLimited); ok {
			if limit, remaining := r.RateLimit(); limit >= 0 {
				gauge(c.rateLimit, float64(limit), t)
				gauge(c.rateRemaining, float64(remaining), t)
			}
		}
		if r, ok := provider.(requestCounter); ok && c.apiRequests[p] != nil {
			counter(c.apiRequests[p], float64(r.Requests()), t)
		}
		if w, ok := provider.(wakeupCounter); ok {
			counter(c.wakeups, float64(w.Wakeups()), t)
		}
	}

	dns := c.st.dns
	for _, q := range dns.QueryCounts() {
		counter(c.dnsAnswers, float64(q.Count), q.Transport, q.Type, q.Rcode)
	}
	udp, tcp := dns.Truncated()
	counter(c.dnsTruncated, float64(udp), "udp")
	counter(c.dnsTruncated, float64(tcp), "tcp")
	gauge(c.dnsSerial, float64(dns.Snapshot().Serial()))

	if consul := c.st.consul(); consul != nil {
		s := consul.Stats()
		counter(c.consulWrites, float64(s.Creates), "create")
		counter(c.consulWrites, float64(s.Updates), "update")
		counter(c.consulWrites, float64(s.Deletes), "delete")
		counter(c.consulFailures, float64(s.Failures))
		if !s.LastSync.IsZero() {
			gauge(c.consulLastSync, float64(s.LastSync.UnixNano())/float64(time.Second))
		}
	}
}
