package controllers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics served on the manager's metrics endpoint. Per-org series are deleted with the org, and
// while it is not checked (Inactive, or its implementation suspended), so that alerts on
// salesforce_org_connected == 0 only ever mean a failed check.
var (
	orgConnected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "salesforce_org_connected",
		Help: "1 when the last check of the org succeeded, 0 otherwise.",
	}, []string{"namespace", "name"})
	orgAPIRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "salesforce_org_api_requests_remaining",
		Help: "Daily API requests the org has left, as of the last check.",
	}, []string{"namespace", "name"})
	orgAPIMax = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "salesforce_org_api_requests_max",
		Help: "The org's daily API request limit, as of the last check.",
	}, []string{"namespace", "name"})
	orgLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "salesforce_org_last_successful_check_timestamp_seconds",
		Help: "Unix time of the org's last successful check.",
	}, []string{"namespace", "name"})
	salesforceCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salesforce_api_calls_total",
		Help: "HTTP requests made to Salesforce, by endpoint and outcome.",
	}, []string{"endpoint", "outcome"})
	checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "salesforce_org_check_duration_seconds",
		Help:    "Duration of one org health check, by result reason.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 10),
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(orgConnected, orgAPIRemaining, orgAPIMax, orgLastSuccess, salesforceCalls, checkDuration)
}

// ObserveSalesforceCall is the salesforce.Options.Observe hook: one count per HTTP request.
func ObserveSalesforceCall(endpoint, outcome string, _ time.Duration) {
	salesforceCalls.WithLabelValues(endpoint, outcome).Inc()
}

func forgetOrgMetrics(namespace, name string) {
	for _, v := range []*prometheus.GaugeVec{orgConnected, orgAPIRemaining, orgAPIMax, orgLastSuccess} {
		v.DeleteLabelValues(namespace, name)
	}
}
