package revocationsource

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the service's Prometheus instruments. Everything lives on a
// caller-supplied registry so tests can build several servers in one process.
type Metrics struct {
	FeedResponses   *prometheus.CounterVec
	FeedBytes       *prometheus.CounterVec
	SnapshotBuild   prometheus.Histogram
	AdminRequests   *prometheus.CounterVec
	StoreErrors     *prometheus.CounterVec
	Reconciles      prometheus.Counter
	ReconcileTime   prometheus.Histogram
	InvalidItems    prometheus.Counter
	LastSyncSeconds prometheus.Gauge
	Watchers        prometheus.Gauge
	WatchOverflows  prometheus.Counter
}

// NewMetrics registers the instruments, plus gauges that read idx.
func NewMetrics(reg prometheus.Registerer, idx *Index) *Metrics {
	m := &Metrics{
		FeedResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocation_source_feed_responses_total",
			Help: "Feed responses by kind (snapshot, delta, not_modified, unauthorized, error, and gone: a long poll whose client left) and content encoding.",
		}, []string{"kind", "encoding"}),
		FeedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocation_source_feed_response_bytes_total",
			Help: "Feed body bytes sent, by kind and content encoding.",
		}, []string{"kind", "encoding"}),
		SnapshotBuild: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "revocation_source_snapshot_build_seconds",
			Help:    "Time to copy, sort and encode one snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		AdminRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocation_source_admin_requests_total",
			Help: "Admin API requests by method and HTTP status code.",
		}, []string{"method", "code"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocation_source_store_errors_total",
			Help: "Store failures by operation (load, follow, write, prune).",
		}, []string{"op"}),
		Reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "revocation_source_reconciles_total",
			Help: "Successful full reads of the store.",
		}),
		ReconcileTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "revocation_source_reconcile_seconds",
			Help:    "Duration of a full read of the store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		InvalidItems: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "revocation_source_invalid_items_total",
			Help: "Store items dropped because they break the feed's limits (jti/sub 1-256 bytes, iss <= 512, valid UTF-8, times < 2^32).",
		}),
		LastSyncSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "revocation_source_last_sync_timestamp_seconds",
			Help: "Unix time of the last successful full read of the store.",
		}),
		Watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "revocation_source_watchers",
			Help: "Long polls (?wait=) held now, waiting for the list to change.",
		}),
		WatchOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "revocation_source_watch_overflows_total",
			Help: "Long polls answered at once because --max-watchers were already held.",
		}),
	}
	reg.MustRegister(m.FeedResponses, m.FeedBytes, m.SnapshotBuild, m.AdminRequests, m.StoreErrors,
		m.Reconciles, m.ReconcileTime, m.InvalidItems, m.LastSyncSeconds, m.Watchers, m.WatchOverflows)
	if idx != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "revocation_source_entries",
				Help: "Revoked jtis currently served.",
			}, func() float64 { n, _ := idx.Len(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "revocation_source_cutoffs",
				Help: "Subject cutoffs currently served.",
			}, func() float64 { _, n := idx.Len(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "revocation_source_held_items",
				Help: "Entries and cutoffs the store dropped when their time came (a TTL, an eviction, a cleanup) that are still served until exp + the expiry grace. Memory only: a restart forgets them.",
			}, func() float64 { e, c := idx.Held(); return float64(e + c) }),
		)
		idx.OnInvalid = m.InvalidItems.Inc
	}
	return m
}
