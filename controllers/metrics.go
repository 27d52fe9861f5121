package controllers

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics served on the manager's metrics endpoint. Per-org series are deleted with the org, and
// while it is not checked (Inactive, or its implementation suspended), so that alerts on
// salesforce_org_connected == 0 only ever mean a failed check.
var (
	orgMetrics      = newOrgSeries()
	salesforceCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salesforce_api_calls_total",
		Help: "HTTP requests made to Salesforce, by endpoint and outcome.",
	}, []string{"endpoint", "outcome"})
	checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "salesforce_org_check_duration_seconds",
		Help:    "Duration of one org health check, by result reason.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 10),
	}, []string{"reason"})
	handoutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salesforce_access_handouts_total",
		Help: "Hand-outs of short-lived org access (SalesforceAccessToken), by org and result: issued, failed, withdrawn, revoke_failed.",
	}, []string{"namespace", "org", "result"})
)

func init() {
	metrics.Registry.MustRegister(orgMetrics, salesforceCalls, checkDuration, handoutsTotal)
}

// ObserveSalesforceCall is the salesforce.Options.Observe hook: one count per HTTP request.
func ObserveSalesforceCall(endpoint, outcome string, _ time.Duration) {
	salesforceCalls.WithLabelValues(endpoint, outcome).Inc()
}

// orgSeries holds the four per-org gauges as one small record per org and makes the series at
// scrape time, as kube-state-metrics does: a GaugeVec child per series (label pairs, hashes,
// descriptors) cost some 2 KiB per org, the largest share of the manager's memory per org.
type orgSeries struct {
	connected, apiRemaining, apiMax, lastSuccess *prometheus.Desc

	mu   sync.RWMutex
	orgs map[types.NamespacedName]*orgValues
}

// orgValues is one org's series; api and lastSuccess exist only once a check succeeded.
type orgValues struct {
	connected                  bool
	hasAPI, hasLastSuccess     bool
	apiRemaining, apiMax, last int64
}

func newOrgSeries() *orgSeries {
	labels := []string{"namespace", "name"}
	return &orgSeries{
		connected: prometheus.NewDesc("salesforce_org_connected",
			"1 when the last check of the org succeeded, 0 otherwise.", labels, nil),
		apiRemaining: prometheus.NewDesc("salesforce_org_api_requests_remaining",
			"Daily API requests the org has left, as of the last check.", labels, nil),
		apiMax: prometheus.NewDesc("salesforce_org_api_requests_max",
			"The org's daily API request limit, as of the last check.", labels, nil),
		lastSuccess: prometheus.NewDesc("salesforce_org_last_successful_check_timestamp_seconds",
			"Unix time of the org's last successful check.", labels, nil),
		orgs: map[types.NamespacedName]*orgValues{},
	}
}

func (s *orgSeries) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.connected
	ch <- s.apiRemaining
	ch <- s.apiMax
	ch <- s.lastSuccess
}

func (s *orgSeries) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, v := range s.orgs {
		connected := 0.0
		if v.connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(s.connected, prometheus.GaugeValue, connected, k.Namespace, k.Name)
		if v.hasAPI {
			ch <- prometheus.MustNewConstMetric(s.apiRemaining, prometheus.GaugeValue, float64(v.apiRemaining), k.Namespace, k.Name)
			ch <- prometheus.MustNewConstMetric(s.apiMax, prometheus.GaugeValue, float64(v.apiMax), k.Namespace, k.Name)
		}
		if v.hasLastSuccess {
			ch <- prometheus.MustNewConstMetric(s.lastSuccess, prometheus.GaugeValue, float64(v.last), k.Namespace, k.Name)
		}
	}
}

// update changes the org's record under the lock, creating it when needed.
func (s *orgSeries) update(namespace, name string, change func(*orgValues)) {
	k := types.NamespacedName{Namespace: namespace, Name: name}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.orgs[k]
	if v == nil {
		v = &orgValues{}
		s.orgs[k] = v
	}
	change(v)
}

// connectedNow records a successful check at now.
func (s *orgSeries) connectedNow(namespace, name string, apiRemaining, apiMax int64, now time.Time) {
	s.update(namespace, name, func(v *orgValues) {
		v.connected, v.hasAPI, v.hasLastSuccess = true, true, true
		v.apiRemaining, v.apiMax, v.last = apiRemaining, apiMax, now.Unix()
	})
}

// disconnected records a failed check.
func (s *orgSeries) disconnected(namespace, name string) {
	s.update(namespace, name, func(v *orgValues) { v.connected = false })
}

func forgetOrgMetrics(namespace, name string) {
	orgMetrics.mu.Lock()
	defer orgMetrics.mu.Unlock()
	delete(orgMetrics.orgs, types.NamespacedName{Namespace: namespace, Name: name})
	handoutsTotal.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "org": name})
}
