package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Request outcomes, the values of tollgate_requests_total's label.
const (
	outcomePaid            = "paid"
	outcomeFree            = "free"
	outcomeUnauthenticated = "unauthenticated"
	outcomeInsufficient    = "insufficient"
	outcomeStoreError      = "store_error"
	outcomeUnbilled        = "unbilled"
	outcomeShadow          = "shadow"
)

// Tollgate's metrics. They are made once and registered in each config's
// registry; account ids are never label values.
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_requests_total",
		Help: "Requests that reached a tollgate handler, by outcome.",
	}, []string{"outcome"})
	metricTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_tokens_total",
		Help: "Tokens moved, by kind: charged, refunded, credited, debited.",
	}, []string{"kind"})
	metricStoreDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tollgate_store_duration_seconds",
		Help:    "How long store operations took, by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"op"})
	metricUsageCapped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_usage_capped_total",
		Help: "Usage reports above the reserve, or unreadable, settled at the reserve.",
	})
	metricUnsettled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_unsettled_total",
		Help: "Settles, refunds and cancels that failed and are retried in the background.",
	})
	metricLeaseFlushes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_lease_flushes_total",
		Help: "Store calls on leases that were acknowledged: each charges what a lease spent, and renews or resizes it.",
	})
	metricLeaseUnbilled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_lease_unbilled_tokens_total",
		Help: "Tokens that requests spent from leases the store no longer had when they were to be charged: served, never charged.",
	})
	metricStripeEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_stripe_events_total",
		Help: "Stripe event deliveries, by outcome: credited, debited, refused, ignored_… and the rest.",
	}, []string{"outcome"})
	metricShadowTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_shadow_tokens_total",
		Help: "Tokens that requests under a shadow tollgate would have cost, by price line.",
	}, []string{"route"})
	metricNotifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_notifications_total",
		Help: "Notification delivery attempts, by event and outcome: delivered, retried, expired, dropped.",
	}, []string{"event", "outcome"})
	metricUnreplicated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_unreplicated_total",
		Help: "Request operations served whose change of money the replicas did not acknowledge in time.",
	})
)

// Resolved once, so that counting a request costs no label lookup.
var (
	countPaid            = metricRequests.WithLabelValues(outcomePaid)
	countFree            = metricRequests.WithLabelValues(outcomeFree)
	countUnauthenticated = metricRequests.WithLabelValues(outcomeUnauthenticated)
	countInsufficient    = metricRequests.WithLabelValues(outcomeInsufficient)
	countStoreError      = metricRequests.WithLabelValues(outcomeStoreError)
	countUnbilled        = metricRequests.WithLabelValues(outcomeUnbilled)
	countShadow          = metricRequests.WithLabelValues(outcomeShadow)
	tokensCharged        = metricTokens.WithLabelValues("charged")
	tokensRefunded       = metricTokens.WithLabelValues("refunded")
	storeCharge          = metricStoreDuration.WithLabelValues("charge")
	storeRefund          = metricStoreDuration.WithLabelValues("refund")
	storeHold            = metricStoreDuration.WithLabelValues("hold")
	storeExtend          = metricStoreDuration.WithLabelValues("extend")
	storeSettle          = metricStoreDuration.WithLabelValues("settle")
	storeRelease         = metricStoreDuration.WithLabelValues("release")
)

// registerMetrics registers the metrics in a config's registry.
func registerMetrics(registry *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{metricRequests, metricTokens, metricStoreDuration, metricUsageCapped, metricUnsettled, metricUnreplicated, metricLeaseFlushes, metricLeaseUnbilled, metricStripeEvents, metricNotifications, metricShadowTokens} {
		if err := registry.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}

// observeSince records the seconds since start.
func observeSince(o prometheus.Observer, start time.Time) {
	o.Observe(time.Since(start).Seconds())
}
